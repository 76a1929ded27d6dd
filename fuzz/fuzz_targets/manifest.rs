//! Any text given as a `ByzSGDJob` or a `ByzantineChaos` (a manifest, a chaos file): parsing and
//! validation end in a value or an error naming the field, never a panic. A chaos file that
//! parses is also checked against the job when the job is valid.

#![no_main]

use byzsgd_api::{Manifest, chaos::ChaosResource, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // One input may hold a job and a chaos file, separated by a YAML document marker.
    let (job_text, chaos_text) = text.split_once("\n---\n").unwrap_or((text, text));
    let Ok(manifest) = Manifest::parse(job_text, "<fuzz>") else {
        let _ = ChaosResource::parse(chaos_text, "<fuzz>");
        return;
    };
    let plan = validate(&manifest.spec);
    if let (Ok(chaos), Ok(plan)) = (ChaosResource::parse(chaos_text, "<fuzz>"), plan) {
        let _ = byzsgd_api::chaos::validate(&chaos.spec, &manifest.name, &plan);
    }
});
