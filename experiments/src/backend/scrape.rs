//! Message and byte counts of a local run, read from its nodes' own `/metrics` while it runs:
//! the runner writes the nodes' admin addresses to `targets.json` (its Prometheus `file_sd`),
//! and a scraper thread reads every node's `byzsgd_messages_total` and `byzsgd_bytes_total`
//! (direction `out`) and `byzsgd_step` four times a second, keeping each node's latest answer.
//! Busy nodes answer late and nodes exit when the job ends, so the latest answers come from
//! different moments; each node's counters are therefore divided by its own step, and the job's
//! figure is the sum of those per-node rates. A run shorter than one scrape leaves the figures
//! unmeasured.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use serde::Deserialize;

/// A node's latest counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// `byzsgd_step`.
    pub step: f64,
    /// Sum of `byzsgd_messages_total{direction="out"}`.
    pub messages_out: f64,
    /// Sum of `byzsgd_bytes_total{direction="out"}`.
    pub bytes_out: f64,
}

/// Per-step totals over the whole job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Traffic {
    /// Messages sent by all nodes per server step.
    pub messages_per_step: f64,
    /// Vector bytes sent by all nodes per server step.
    pub bytes_per_step: f64,
}

/// A running scraper; [`Scraper::finish`] stops it and returns the traffic.
#[derive(Debug)]
pub struct Scraper {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<BTreeMap<String, (String, Sample)>>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Deserialize)]
struct TargetGroup {
    targets: Vec<String>,
    labels: BTreeMap<String, String>,
}

impl Scraper {
    /// Starts scraping the run that the runner creates under `runs_dir`.
    pub fn start(runs_dir: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::default();
        let thread = {
            let stop = stop.clone();
            let samples = Arc::clone(&samples);
            let runs_dir = runs_dir.to_path_buf();
            std::thread::spawn(move || scrape_loop(&runs_dir, &stop, &samples))
        };
        Self {
            stop,
            samples,
            thread: Some(thread),
        }
    }

    /// Stops the thread; returns the per-step traffic if any server reported a step.
    pub fn finish(mut self) -> Option<Traffic> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        traffic(samples.values())
    }
}

/// The sum over nodes of each node's counters divided by its own step; `None` until a server
/// has made a step.
fn traffic<'a>(samples: impl Iterator<Item = &'a (String, Sample)>) -> Option<Traffic> {
    let (mut messages, mut bytes, mut servers) = (0.0, 0.0, 0);
    for (role, sample) in samples.filter(|(_, s)| s.step > 0.0) {
        messages += sample.messages_out / sample.step;
        bytes += sample.bytes_out / sample.step;
        servers += usize::from(role == "server");
    }
    (servers > 0).then_some(Traffic {
        messages_per_step: messages,
        bytes_per_step: bytes,
    })
}

fn scrape_loop(
    runs_dir: &Path,
    stop: &AtomicBool,
    samples: &Mutex<BTreeMap<String, (String, Sample)>>,
) {
    let Ok(http) = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
    else {
        return;
    };
    let mut targets: Option<PathBuf> = None;
    while !stop.load(Ordering::Relaxed) {
        if targets.is_none() {
            targets = find_targets(runs_dir);
        }
        let groups: Vec<TargetGroup> = targets
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        for group in groups {
            let (Some(node), Some(role)) = (group.labels.get("node"), group.labels.get("role"))
            else {
                continue;
            };
            if role == "runner" {
                continue;
            }
            for target in &group.targets {
                let text = http
                    .get(format!("http://{target}/metrics"))
                    .send()
                    .and_then(reqwest::blocking::Response::text);
                if let Ok(text) = text {
                    samples
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(node.clone(), (role.clone(), parse(&text)));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn find_targets(runs_dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(runs_dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("targets.json"))
        .find(|path| path.is_file())
}

/// Reads the three counters from Prometheus text exposition.
fn parse(text: &str) -> Sample {
    let mut sample = Sample::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        let outgoing = series.contains("direction=\"out\"");
        match name {
            "byzsgd_step" => sample.step = value,
            "byzsgd_messages_total" if outgoing => sample.messages_out += value,
            "byzsgd_bytes_total" if outgoing => sample.bytes_out += value,
            _ => {}
        }
    }
    sample
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_nodes_outgoing_counters_are_divided_by_its_own_step_and_summed() {
        let server = parse(
            "# HELP x\nbyzsgd_step 10\nbyzsgd_messages_total{direction=\"out\",kind=\"model\"} 70\n\
             byzsgd_messages_total{direction=\"in\",kind=\"gradient\"} 70\n\
             byzsgd_messages_total{direction=\"out\",kind=\"gather\"} 4\n\
             byzsgd_bytes_total{direction=\"out\",kind=\"model\"} 1000\n",
        );
        assert_eq!(
            server,
            Sample {
                step: 10.0,
                messages_out: 74.0,
                bytes_out: 1000.0
            }
        );
        let worker =
            parse("byzsgd_step 5\nbyzsgd_messages_total{direction=\"out\",kind=\"gradient\"} 25\n");
        let samples = [("server".to_owned(), server), ("worker".to_owned(), worker)];
        let totals = traffic(samples.iter()).expect("a server reported");
        // 74 / 10 from the server, 25 / 5 from the worker sampled earlier.
        assert!((totals.messages_per_step - 12.4).abs() < 1e-9);
        assert!((totals.bytes_per_step - 100.0).abs() < 1e-9);
        assert_eq!(traffic(std::iter::empty()), None);
    }
}
