//! `plot.png` of a local run: test accuracy of every correct server and the largest distance
//! between correct servers, against steps. Drawn as SVG with `plotters` and rasterised with
//! `resvg` (system fonts; Debian's `fonts-dejavu-core`), so no native plotting stack is needed.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use super::record::Recorder;

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 500;

/// Writes `plot.png` (and `plot.svg`) into `dir`.
pub fn write(dir: &Path, recorder: &Recorder) -> anyhow::Result<()> {
    let svg = render_svg(recorder)?;
    std::fs::write(dir.join("plot.svg"), &svg)?;
    let png = rasterise(&svg)?;
    std::fs::write(dir.join("plot.png"), png).context("cannot write plot.png")
}

fn render_svg(recorder: &Recorder) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        let (left, right) = root.split_horizontally(WIDTH / 2);
        let last_step = recorder
            .accuracy
            .values()
            .flatten()
            .chain(&recorder.drift)
            .map(|point| point.step)
            .max()
            .unwrap_or(1)
            .max(1);

        let mut accuracy = ChartBuilder::on(&left)
            .caption("Test accuracy of correct servers", ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(0u64..last_step, 0f32..1f32)
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        accuracy
            .configure_mesh()
            .x_desc("step")
            .y_desc("accuracy")
            .draw()
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        for (position, (node, points)) in recorder.accuracy.iter().enumerate() {
            let color = Palette99::pick(position).to_rgba();
            accuracy
                .draw_series(LineSeries::new(
                    points.iter().map(|point| (point.step, point.value)),
                    color.stroke_width(2),
                ))
                .map_err(|error| anyhow::anyhow!("{error}"))?
                .label(node.to_string())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        accuracy
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|error| anyhow::anyhow!("{error}"))?;

        let top = recorder
            .drift
            .iter()
            .map(|point| point.value)
            .fold(0.0_f32, f32::max)
            .max(1e-12)
            * 1.1;
        let mut drift = ChartBuilder::on(&right)
            .caption("Max distance between correct servers", ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0u64..last_step, 0f32..top)
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        drift
            .configure_mesh()
            .x_desc("step")
            .y_desc("L2 distance")
            .y_label_formatter(&|value| format!("{value:.1e}"))
            .draw()
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        drift
            .draw_series(LineSeries::new(
                recorder.drift.iter().map(|point| (point.step, point.value)),
                RED.stroke_width(2),
            ))
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        root.present().map_err(|error| anyhow::anyhow!("{error}"))?;
    }
    Ok(svg)
}

/// Rasterises an SVG to PNG bytes.
pub fn rasterise(svg: &str) -> anyhow::Result<Vec<u8>> {
    let mut options = resvg::usvg::Options::default();
    let fonts = options.fontdb_mut();
    fonts.load_system_fonts();
    // fontdb maps `sans-serif` to Arial by default; Debian ships DejaVu (fonts-dejavu-core).
    fonts.set_sans_serif_family("DejaVu Sans");
    let tree = resvg::usvg::Tree::from_str(svg, &options).context("invalid SVG")?;
    let size = tree.size().to_int_size();
    let mut pixmap =
        resvg::tiny_skia::Pixmap::new(size.width(), size.height()).context("plot size is zero")?;
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().context("cannot encode PNG")
}
