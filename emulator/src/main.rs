fn main() {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    if let Err(e) = rt.block_on(emulator::demo::run()) {
        eprintln!("emu: {e:#}");
        std::process::exit(1);
    }
}
