//! `byzsgd-exp`: the experiment runner.

fn main() -> std::process::ExitCode {
    eprintln!("byzsgd-exp: the experiment runner is not built yet (see the experiments issue)");
    std::process::ExitCode::FAILURE
}
