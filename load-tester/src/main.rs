//! `load-tester`: see the library crate for everything it does.

fn main() {
    std::process::exit(alphapulse_load_tester::app::main());
}
