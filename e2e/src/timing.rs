//! Timings of the end-to-end phases as JSON lines on stderr, so a run's figures can be quoted
//! (`grep '"e2e":"timing"'`): `{"e2e":"timing","test":…,"phase":…,"seconds":…}` plus any
//! extra fields a phase adds (steps, accuracy, pod count).

use std::time::Instant;

use serde_json::{Map, Value, json};

/// Measures one phase; [`Stopwatch::done`] prints it.
#[derive(Debug)]
pub struct Stopwatch {
    test: &'static str,
    phase: String,
    started: Instant,
}

impl Stopwatch {
    /// Starts timing `phase` of `test`.
    pub fn start(test: &'static str, phase: &str) -> Self {
        Self {
            test,
            phase: phase.to_owned(),
            started: Instant::now(),
        }
    }

    /// Seconds since the start.
    pub fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Prints the phase's line and returns its seconds.
    pub fn done(self) -> f64 {
        self.done_with(&json!({}))
    }

    /// Prints the phase's line with the fields of `extra` (a JSON object) added.
    pub fn done_with(self, extra: &Value) -> f64 {
        let seconds = self.seconds();
        eprintln!("{}", line(self.test, &self.phase, seconds, extra));
        seconds
    }
}

/// The JSON line of one phase.
pub fn line(test: &str, phase: &str, seconds: f64, extra: &Value) -> String {
    let mut fields = Map::new();
    fields.insert("e2e".to_owned(), json!("timing"));
    fields.insert("test".to_owned(), json!(test));
    fields.insert("phase".to_owned(), json!(phase));
    fields.insert(
        "seconds".to_owned(),
        json!((seconds * 1000.0).round() / 1000.0),
    );
    if let Some(extra) = extra.as_object() {
        for (key, value) in extra {
            fields.insert(key.clone(), value.clone());
        }
    }
    Value::Object(fields).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timing_line_is_one_json_object_with_the_extra_fields() {
        let text = line("readme", "helm_install", 4.123_456, &json!({"pods": 12}));
        let parsed: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(parsed["e2e"], "timing");
        assert_eq!(parsed["phase"], "helm_install");
        assert_eq!(parsed["seconds"], 4.123);
        assert_eq!(parsed["pods"], 12);
        assert!(!text.contains('\n'));
    }
}
