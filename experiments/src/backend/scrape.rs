//! Message and byte counts of a local run, read from its nodes' own `/metrics` while it runs:
//! the runner writes the nodes' admin addresses to `targets.json` (its Prometheus `file_sd`),
//! and a scraper thread reads every node's `byzsgd_messages_total` and `byzsgd_bytes_total`
//! (direction `out`) and `byzsgd_step` once a second, keeping each node's latest sample. Nodes
//! exit when the job ends, so the last sample is up to a second before the end; the ratio to
//! the steps in the same samples stays exact enough for per-step figures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

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

/// Totals over nodes divided by the servers' median step.
fn traffic<'a>(samples: impl Iterator<Item = &'a (String, Sample)>) -> Option<Traffic> {
    let mut steps = Vec::new();
    let (mut messages, mut bytes) = (0.0, 0.0);
    for (role, sample) in samples {
        messages += sample.messages_out;
        bytes += sample.bytes_out;
        if role == "server" {
            steps.push(sample.step);
        }
    }
    let step = super::median(steps).filter(|s| *s > 0.0)?;
    Some(Traffic {
        messages_per_step: messages / step,
        bytes_per_step: bytes / step,
    })
}

fn scrape_loop(
    runs_dir: &Path,
    stop: &AtomicBool,
    samples: &Mutex<BTreeMap<String, (String, Sample)>>,
) {
    let Ok(http) = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(800))
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
                    let sample = parse(&text);
                    samples
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(node.clone(), (role.clone(), sample));
                }
            }
        }
        std::thread::sleep(Duration::from_secs(1));
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
    fn outgoing_counters_are_summed_over_kinds_and_divided_by_the_servers_step() {
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
            parse("byzsgd_step 9\nbyzsgd_messages_total{direction=\"out\",kind=\"gradient\"} 46\n");
        let samples = [("server".to_owned(), server), ("worker".to_owned(), worker)];
        let totals = traffic(samples.iter()).expect("a server reported");
        assert!((totals.messages_per_step - 12.0).abs() < 1e-9);
        assert!((totals.bytes_per_step - 100.0).abs() < 1e-9);
        assert_eq!(traffic(std::iter::empty()), None);
    }
}
