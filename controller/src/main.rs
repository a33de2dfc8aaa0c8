//! `cert-sync`: see `cert-sync --help`. The loop is `app`.

use anyhow::Result;
use certsync_controller::config::{Args, Command, LogFormat};
use certsync_controller::runtime::ops::heap;
use clap::Parser;

// One thread: the controller waits on the API server and gateway reports,
// and a single-threaded runtime keeps one malloc arena (measured: ~2 MiB
// lower peak RSS at 10,000 Secrets, same latency).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    heap::configure();
    let args = Args::parse();
    if let Some(Command::Status(status_args)) = &args.command {
        return certsync_controller::status_cli::run(status_args).await;
    }
    init_logging(args.log_format);
    certsync_controller::app::run(&args).await
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: log collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
