//! `byzsgd-operator`: the ByzSGDJob controller.

fn main() -> std::process::ExitCode {
    eprintln!("byzsgd-operator: the controller is not built yet (see the operator issue)");
    std::process::ExitCode::FAILURE
}
