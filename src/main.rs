//! `runnerpool-operator`: parses the command line, sets up logging and the
//! async runtime, and hands over to the library ([`runnerpool::operator`]).

use clap::{Parser, Subcommand};
use runnerpool::convert;
use runnerpool::operator::{self, config::Config, config::LogFormat};
use tracing::error;

#[derive(Parser)]
#[command(
    name = "runnerpool-operator",
    version,
    about = "Ephemeral, just-in-time GitHub Actions runners on Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator.
    Run(Box<Config>),
    /// Print the CustomResourceDefinitions (RunnerPool, RunnerGroup) as YAML.
    Crd,
    /// Print RunnerPools equivalent to actions-runner-controller (ARC) manifests.
    ///
    /// Reads AutoscalingRunnerSets, RunnerDeployments with their
    /// HorizontalRunnerAutoscalers, and values files of the
    /// gha-runner-scale-set chart; prints one RunnerPool for each, with a
    /// `# not converted:` comment for every setting without an equivalent.
    /// Other documents are skipped with a comment and a warning. Prints
    /// nothing and exits with 1 when a file cannot be read, is not YAML or
    /// holds an ARC object that cannot be converted.
    Convert(convert::ConvertArgs),
}

/// jemalloc, not glibc's malloc: with 1,000 pools × 5 runners glibc kept
/// about 25 MiB of freed chunks in its arenas (87.3 MiB RSS); jemalloc gives
/// freed pages back (69.4 MiB, the same run). See the README's "Measured".
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", runnerpool::crd_yaml());
            std::process::ExitCode::SUCCESS
        }
        Command::Convert(args) => match convert::run(&args) {
            Ok(converted) => {
                for warning in &converted.warnings {
                    eprintln!("warning: {warning}");
                }
                print!("{}", converted.yaml);
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        Command::Run(config) => {
            init_logging(&config);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    error!(error = %e, "cannot start the async runtime");
                    return std::process::ExitCode::FAILURE;
                }
            };
            match runtime.block_on(operator::run(*config)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    error!(error = %e, "operator stopped");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
