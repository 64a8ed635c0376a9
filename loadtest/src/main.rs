use clap::Parser;

fn main() {
    let cli = loadtest::cli::Cli::parse();
    std::process::exit(loadtest::cli::run_cli(cli));
}
