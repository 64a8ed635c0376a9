use clap::Parser;

fn main() {
    let cli = loadtest::cli::Cli::parse();
    std::process::exit(loadtest::run_cli(cli));
}
