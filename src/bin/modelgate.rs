//! The `modelgate` command line.

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use modelgate::route::{Assignment, CompiledExperiment, Router};

/// Route traffic between model versions, watch drift and quality, retrain and promote.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the variant a key gets in every experiment of a config.
    Route {
        /// Experiments config (TOML).
        #[arg(long)]
        config: PathBuf,
        /// The key to route (user id, session id, request id).
        #[arg(
            long,
            required_unless_present = "keys_from",
            conflicts_with = "keys_from"
        )]
        key: Option<String>,
        /// Route every line of this file as a key (`-` for standard input); blank lines
        /// are skipped.
        #[arg(long)]
        keys_from: Option<PathBuf>,
        /// One JSON object per experiment and key, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Compare two CSV files column by column: KS (with its error bound), PSI, Wasserstein,
    /// chi-square, and a verdict per column. Memory stays bounded (sketches) unless --exact.
    Drift {
        /// The reference window (for example the model's training data), CSV with a header.
        #[arg(long)]
        reference: PathBuf,
        /// The current window, CSV with the same columns.
        #[arg(long)]
        current: PathBuf,
        /// Only these columns (comma-separated).
        #[arg(long, value_delimiter = ',')]
        columns: Option<Vec<String>>,
        /// Treat these columns as numeric (a non-number is then an error).
        #[arg(long, value_delimiter = ',')]
        numeric: Vec<String>,
        /// Treat these columns as categorical.
        #[arg(long, value_delimiter = ',')]
        categorical: Vec<String>,
        /// Keep all values and compute exact statistics, counting every category exactly
        /// (memory grows with the files).
        #[arg(long)]
        exact: bool,
        /// Sketch accuracy: larger k, smaller rank error (default 1024).
        #[arg(long)]
        k: Option<u16>,
        /// Significance level after Benjamini-Hochberg over the columns.
        #[arg(long, default_value_t = 0.05)]
        alpha: f64,
        /// Smallest KS D that counts as drift.
        #[arg(long, default_value_t = 0.1)]
        min_effect: f64,
        /// One JSON object per column, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Compare variants of an A/B test from a CSV file: fixed-horizon tests, always-valid
    /// (sequential) p-values, sample ratio mismatch and the winner policy's decision.
    Abtest {
        /// CSV with header `variant,value` (observations), `variant,n,mean,variance` or
        /// `variant,n,successes` (aggregates).
        #[arg(long)]
        input: PathBuf,
        /// `binary` or `continuous` (observation files: inferred from the values; aggregate
        /// files: from the header).
        #[arg(long)]
        metric: Option<String>,
        /// The control variant (default: one named `control`, else the first in the file).
        #[arg(long)]
        control: Option<String>,
        /// Configured traffic weights, `a=0.5,b=0.5` (default: equal).
        #[arg(long)]
        weights: Option<String>,
        /// Error rate of the tests and intervals.
        #[arg(long, default_value_t = 0.05)]
        alpha: f64,
        /// Superiority margin on the relative lift (0.05: the candidate must be 5% better;
        /// negative for non-inferiority, `--margin -0.05`: at most 5% worse).
        #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
        margin: f64,
        /// One JSON object with `variants` and `comparisons`.
        #[arg(long)]
        json: bool,
    },
    /// Run the sidecar: agents report to it, it serves their control document.
    Serve {
        /// Sidecar config (TOML); tokens come from MODELGATE_AGENT_TOKEN and
        /// MODELGATE_ADMIN_TOKEN unless the file names other sources.
        #[arg(long)]
        config: PathBuf,
        /// Override the config's listen address (for example 127.0.0.1:0).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Print a summary of a running sidecar (admin token from MODELGATE_ADMIN_TOKEN).
    Status {
        /// The sidecar's URL.
        #[arg(long, default_value = "http://127.0.0.1:7070")]
        url: String,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve a run waiting for review: its candidate is promoted.
    Approve {
        /// The run id (see `modelgate runs`).
        run_id: i64,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
        /// The sidecar's URL.
        #[arg(long, default_value = "http://127.0.0.1:7070")]
        url: String,
    },
    /// Reject a run waiting for review.
    Reject {
        /// The run id.
        run_id: i64,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
        /// The sidecar's URL.
        #[arg(long, default_value = "http://127.0.0.1:7070")]
        url: String,
    },
    /// Restore the previous production model (or --to VERSION) at once.
    Rollback {
        /// The version to restore (default: the `previous` alias).
        #[arg(long)]
        to: Option<u32>,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
        /// The sidecar's URL.
        #[arg(long, default_value = "http://127.0.0.1:7070")]
        url: String,
    },
    /// Start a training run now.
    Retrain {
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
        /// Follow the run until it ends: a progress line on a terminal, one line per step
        /// otherwise.
        #[arg(long)]
        wait: bool,
        /// The sidecar's URL.
        #[arg(long, default_value = "http://127.0.0.1:7070")]
        url: String,
    },
    /// List pipeline runs with their steps.
    Runs {
        /// How many, newest first.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
        /// The sidecar's URL.
        #[arg(long, default_value = "http://127.0.0.1:7070")]
        url: String,
    },
    /// Train one model from a CSV file and write DIR/model.json (the artifact) and
    /// DIR/metrics.json: the one-shot trainer any orchestrator (an Airflow task, cron, a
    /// Kubernetes Job) can call.
    Train {
        /// The CSV file (header row, numeric features, a time column in Unix ms).
        #[arg(long)]
        data: PathBuf,
        /// The label column.
        #[arg(long)]
        target: String,
        /// The output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Logistic regression (binary label) or linear regression (continuous label).
        #[arg(long, value_enum, default_value = "logistic")]
        kind: TrainKind,
        /// The features, comma-separated (default: every column but the time and label).
        #[arg(long, value_delimiter = ',')]
        features: Option<Vec<String>>,
        /// The time column.
        #[arg(long, default_value = "timestamp_ms")]
        timestamp: String,
        /// Logistic: the label value that is class 1 in the file.
        #[arg(long, default_value = "1")]
        positive: String,
        /// Logistic: the positive label's name recorded in the artifact, when the file
        /// encodes it as --positive (default: --positive).
        #[arg(long)]
        positive_name: Option<String>,
        /// The model's name in the artifact.
        #[arg(long, default_value = "model")]
        name: String,
        /// Logistic: the L2 penalty.
        #[arg(long)]
        alpha: Option<f64>,
    },
    /// The whole loop on real data (Elec2) in under a minute: a sidecar and serving agents
    /// on 127.0.0.1, drift, retraining, evaluation, the policy's decision, notifications, a
    /// guarded rollout and hot swaps, then a summary (also as JSON).
    Demo {
        /// The Elec2 CSV (default: data/elec2.csv of this repository).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Rows replayed after the first period (speed: fewer is faster).
        #[arg(long, default_value_t = 16_000)]
        rows: usize,
        /// Rows v1 is trained on.
        #[arg(long, default_value_t = 4_000)]
        first_period: usize,
        /// Replay speed: data rows per round (48 half-hours = one simulated day between
        /// lifecycle checks; more is faster and coarser).
        #[arg(long, default_value_t = 48)]
        speed: usize,
        /// Requests per data row (distinct users).
        #[arg(long, default_value_t = 12)]
        users_per_row: usize,
        /// Serving threads, one agent each.
        #[arg(long, default_value_t = 3)]
        threads: usize,
        /// Seed of the user keys.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Directory for the database and model artifacts (default: a fresh one under the
        /// system's temporary directory; the path is printed).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Where to write the JSON summary (default: summary.json in the demo directory).
        #[arg(long)]
        summary_json: Option<PathBuf>,
        /// Keep the sidecar running after the replay (Ctrl-C to stop), to look at /metrics
        /// and /v1/status.
        #[arg(long)]
        keep: bool,
        /// Only the summary.
        #[arg(long)]
        quiet: bool,
        /// Send the notifications to this local SMTP server (host:port, plain text)
        /// instead of the log.
        #[arg(long)]
        smtp: Option<String>,
    },
}

/// The model kinds `modelgate train` fits.
#[derive(Clone, Copy, clap::ValueEnum)]
enum TrainKind {
    /// Logistic regression on a binary label.
    Logistic,
    /// Linear regression on a continuous label.
    Linear,
}

/// Exit code for bad input (config, keys file).
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Route {
            config,
            key,
            keys_from,
            json,
        } => route(&config, key.as_deref(), keys_from.as_deref(), json),
        Command::Drift {
            reference,
            current,
            columns,
            numeric,
            categorical,
            exact,
            k,
            alpha,
            min_effect,
            json,
        } => {
            let options = modelgate::drift::table::TableOptions {
                columns,
                numeric,
                categorical,
                exact,
                k,
            };
            drift(&reference, &current, &options, alpha, min_effect, json)
        }
        Command::Abtest {
            input,
            metric,
            control,
            weights,
            alpha,
            margin,
            json,
        } => abtest(
            &input,
            metric.as_deref(),
            control.as_deref(),
            weights.as_deref(),
            alpha,
            margin,
            json,
        ),
        Command::Serve { config, listen } => serve(&config, listen.as_deref()),
        Command::Status { url, json } => status(&url, json),
        Command::Approve {
            run_id,
            reason,
            url,
        } => admin(&url, |c| c.approve(run_id, &reason)).map(print_json),
        Command::Reject {
            run_id,
            reason,
            url,
        } => admin(&url, |c| c.reject(run_id, &reason)).map(print_json),
        Command::Rollback { to, reason, url } => {
            admin(&url, |c| c.rollback(to, &reason)).map(print_json)
        }
        Command::Retrain { reason, wait, url } => retrain(&url, &reason, wait),
        Command::Runs { limit, json, url } => admin(&url, |c| c.runs(limit)).map(|runs| {
            if json {
                print_json(serde_json::to_value(&runs).unwrap_or_default());
            } else {
                print!("{}", modelgate::sidecar::client::render_runs(&runs));
            }
        }),
        Command::Train {
            data,
            target,
            out,
            kind,
            features,
            timestamp,
            positive,
            positive_name,
            name,
            alpha,
        } => {
            use modelgate::artifact::ModelKind;
            let kind = match kind {
                TrainKind::Logistic => ModelKind::LogisticRegression,
                TrainKind::Linear => ModelKind::LinearRegression,
            };
            let mut training =
                modelgate::sidecar::train::OneShotTraining::new(data, target, out, kind);
            training.features = features;
            training.timestamp_column = timestamp;
            training.positive = positive;
            training.positive_name = positive_name;
            training.name = name;
            training.alpha = alpha;
            train(&training)
        }
        Command::Demo {
            data,
            rows,
            first_period,
            speed,
            users_per_row,
            threads,
            seed,
            dir,
            summary_json,
            keep,
            quiet,
            smtp,
        } => {
            let data = data.unwrap_or_else(default_data);
            let dir = dir.unwrap_or_else(|| {
                std::env::temp_dir().join(format!(
                    "modelgate-demo-{}-{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0)
                ))
            });
            let mut options = modelgate::sidecar::demo::DemoOptions::new(data, dir);
            options.rows = rows;
            options.first_period = first_period;
            options.rows_per_round = speed.max(1);
            options.users_per_row = users_per_row.max(1);
            options.threads = threads.max(1);
            options.seed = seed;
            options.verbose = !quiet;
            options.smtp = smtp;
            demo(options, summary_json, keep)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("modelgate: {message}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

fn train(training: &modelgate::sidecar::train::OneShotTraining) -> Result<(), String> {
    let mut progress = |p: modelgate::sidecar::train::TrainProgress| {
        if let Ok(line) = serde_json::to_string(&p) {
            eprintln!("{line}");
        }
    };
    let done = training.run(&mut progress).map_err(|e| e.to_string())?;
    let metrics: Vec<String> = done
        .artifact
        .metrics
        .iter()
        .map(|(k, v)| format!("{k}={v:.4}"))
        .collect();
    println!(
        "trained {} on {} rows ({} skipped): {}",
        done.artifact.kind.as_str(),
        done.rows,
        done.skipped,
        metrics.join(" ")
    );
    println!(
        "wrote {} (sha256 {})",
        done.model_path.display(),
        done.sha256
    );
    println!("wrote {}", done.metrics_path.display());
    Ok(())
}

fn serve(config: &Path, listen: Option<&str>) -> Result<(), String> {
    use modelgate::sidecar::config::SidecarConfig;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let mut config = SidecarConfig::load(config).map_err(|e| e.to_string())?;
    if let Some(listen) = listen {
        config.listen = listen
            .parse()
            .map_err(|_| format!("--listen `{listen}` is not an address like 127.0.0.1:7070"))?;
    }
    let database = config.database.clone();
    modelgate::sidecar::server::serve_forever(&config, |addr| {
        // One line on stdout, so scripts and tests can find the port.
        println!("listening on http://{addr}");
        let _ = std::io::stdout().flush();
        eprintln!("modelgate: database {}", database.display());
    })
    .map_err(|e| e.to_string())
}

fn admin<T>(
    url: &str,
    call: impl FnOnce(
        &modelgate::sidecar::client::AdminClient,
    ) -> Result<T, modelgate::sidecar::client::ClientError>,
) -> Result<T, String> {
    let token = std::env::var("MODELGATE_ADMIN_TOKEN")
        .map_err(|_| "set MODELGATE_ADMIN_TOKEN to the sidecar's admin token".to_owned())?;
    let client =
        modelgate::sidecar::client::AdminClient::new(url, &token).map_err(|e| e.to_string())?;
    call(&client).map_err(|e| e.to_string())
}

/// Queues a run and, with `wait`, follows it step by step until it leaves `running`.
fn retrain(url: &str, reason: &str, wait: bool) -> Result<(), String> {
    use std::io::IsTerminal as _;
    let before = admin(url, |c| c.runs(1))?.first().map_or(0, |r| r.id);
    let answer = admin(url, |c| c.retrain(reason))?;
    if !wait {
        print_json(answer);
        return Ok(());
    }
    let terminal = std::io::stdout().is_terminal();
    let started = std::time::Instant::now();
    let mut printed = 0usize;
    loop {
        let run = admin(url, |c| c.runs(1))?
            .into_iter()
            .next()
            .filter(|r| r.id > before);
        if let Some(run) = &run {
            if terminal {
                let current = run
                    .steps
                    .last()
                    .map_or("queued".to_owned(), |s| format!("{} {}", s.name, s.state));
                print!(
                    "\r\x1b[2Krun {} [{}/{} steps] {current} ({:.0} s)",
                    run.id,
                    run.steps.iter().filter(|s| s.state != "running").count(),
                    run.steps.len(),
                    started.elapsed().as_secs_f64()
                );
                let _ = std::io::stdout().flush();
            } else {
                for step in run
                    .steps
                    .iter()
                    .filter(|s| s.state != "running")
                    .skip(printed)
                {
                    println!("run {} step {} {}", run.id, step.name, step.state);
                    printed += 1;
                }
            }
            if run.state != "running" {
                if terminal {
                    println!();
                }
                println!(
                    "run {} ended {}: {}",
                    run.id,
                    run.state,
                    run.outcome
                        .as_ref()
                        .map(|o| o.to_string())
                        .unwrap_or_default()
                );
                return if run.state == "failed" {
                    Err(format!("run {} failed", run.id))
                } else {
                    Ok(())
                };
            }
        }
        if started.elapsed() > std::time::Duration::from_secs(24 * 3600) {
            return Err("gave up waiting after 24 h".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

fn print_json(value: serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string())
    );
}

fn status(url: &str, json: bool) -> Result<(), String> {
    let token = std::env::var("MODELGATE_ADMIN_TOKEN")
        .map_err(|_| "set MODELGATE_ADMIN_TOKEN to the sidecar's admin token".to_owned())?;
    let client =
        modelgate::sidecar::client::AdminClient::new(url, &token).map_err(|e| e.to_string())?;
    let status = client.status().map_err(|e| e.to_string())?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).map_err(|e| e.to_string())?
        );
    } else {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        print!(
            "{}",
            modelgate::sidecar::client::render_status(&status, now)
        );
    }
    Ok(())
}

fn load_router(path: &Path) -> Result<Router, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Router::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn route(
    config: &Path,
    key: Option<&str>,
    keys_from: Option<&Path>,
    json: bool,
) -> Result<(), String> {
    let router = load_router(config)?;
    if router.current().experiments().is_empty() {
        return Err(format!(
            "{}: the config defines no experiments (add an [[experiments]] table)",
            config.display()
        ));
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut emit = |key: &str| -> Result<(), String> {
        let mut result = Ok(());
        router.route_all(key, |experiment, assignment| {
            if result.is_ok() {
                result = print_assignment(&mut out, &router, experiment, key, assignment, json);
            }
        });
        result
    };
    match (key, keys_from) {
        (Some(key), _) => emit(key)?,
        (None, Some(path)) => {
            let reader: Box<dyn BufRead> = if path == Path::new("-") {
                Box::new(std::io::stdin().lock())
            } else {
                let file = std::fs::File::open(path)
                    .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
                Box::new(std::io::BufReader::new(file))
            };
            for (number, line) in reader.lines().enumerate() {
                // `lines` drops `\n` and `\r\n`; a last line may still end in a lone `\r`.
                let line =
                    line.map_err(|e| format!("{}: line {}: {e}", path.display(), number + 1))?;
                let line = line.strip_suffix('\r').unwrap_or(&line);
                if !line.trim().is_empty() {
                    emit(line)?;
                }
            }
        }
        (None, None) => return Err("give --key KEY or --keys-from FILE".into()),
    }
    out.flush().map_err(|e| format!("cannot write output: {e}"))
}

fn print_assignment(
    out: &mut impl Write,
    router: &Router,
    experiment: &CompiledExperiment,
    key: &str,
    assignment: Assignment,
    json: bool,
) -> Result<(), String> {
    let variant = assignment.variant.and_then(|id| experiment.variant(id));
    let line = if json {
        serde_json::json!({
            "key": key,
            "experiment": experiment.name(),
            "variant": variant.map(|v| v.name()),
            "model": variant.and_then(|v| v.model()),
            "in_experiment": assignment.in_experiment(),
            "bucket": assignment.bucket,
            "reason": assignment.reason.as_str(),
            "hash": experiment.scheme().as_str(),
            "strategy": experiment.strategy().as_str(),
        })
        .to_string()
    } else {
        let percent = experiment
            .candidate_percent(router.clock())
            .map(|p| format!(", candidate at {p}%"))
            .unwrap_or_default();
        format!(
            "{}\t{}\t{}\tbucket={:.6}\t{}{}",
            key,
            experiment.name(),
            variant.map_or("-", |v| v.name()),
            // Truncated, not rounded: a bucket is below 1 and must not print as 1.000000.
            (assignment.bucket * 1e6).floor() / 1e6,
            assignment.reason.as_str(),
            percent
        )
    };
    writeln!(out, "{line}").map_err(|e| format!("cannot write output: {e}"))
}

fn drift(
    reference: &Path,
    current: &Path,
    options: &modelgate::drift::table::TableOptions,
    alpha: f64,
    min_effect: f64,
    json: bool,
) -> Result<(), String> {
    use modelgate::drift::{Comparison, Thresholds, table};
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(format!("--alpha must be in (0, 1), got {alpha}"));
    }
    if !(0.0..=1.0).contains(&min_effect) {
        return Err(format!("--min-effect must be in [0, 1], got {min_effect}"));
    }
    let thresholds = Thresholds {
        alpha,
        ks_min_effect: min_effect,
        ..Thresholds::default()
    };
    let r = table::profile_file(reference, options).map_err(|e| e.to_string())?;
    let c = table::profile_file(current, options).map_err(|e| e.to_string())?;
    let results = table::compare(&r, &c, &thresholds).map_err(|e| e.to_string())?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let write_err = |e: std::io::Error| format!("cannot write output: {e}");
    if !json {
        writeln!(
            out,
            "reference {} ({} rows) vs current {} ({} rows){}",
            r.file,
            r.rows,
            c.file,
            c.rows,
            if options.exact { ", exact" } else { "" }
        )
        .map_err(write_err)?;
        writeln!(
            out,
            "{:<28} {:<12} {:>16} {:>10} {:>10} {:>9} {:>9}  verdict",
            "column", "kind", "KS D ± bound", "p", "adj. p", "PSI", "W1/sd"
        )
        .map_err(write_err)?;
    }
    for result in &results {
        let Some(d) = &result.drift else {
            // A file has no value in this column: no statistics, verdict `no_data`.
            let hint = result.no_data.as_deref().unwrap_or("no data");
            if json {
                let object = serde_json::json!({
                    "column": result.column,
                    "kind": result.kind,
                    "verdict": result.verdict(),
                    "adjusted_p_value": null,
                    "hint": hint,
                    "ks": null,
                    "ks_error_bound": null,
                    "p_value": null,
                    "psi": null,
                    "psi_no_drift_quantile": null,
                    "wasserstein": null,
                    "n_reference": result.n_reference,
                    "n_current": result.n_current,
                    "missing_reference": result.missing_reference,
                    "missing_current": result.missing_current,
                    "missing_p_value": result.missing_p_value,
                });
                writeln!(out, "{object}").map_err(write_err)?;
            } else {
                let kind = match result.kind {
                    table::ColumnKind::Numeric => "numeric",
                    table::ColumnKind::Categorical => "categorical",
                };
                writeln!(
                    out,
                    "{:<28} {:<12} {:>16} {:>10} {:>10} {:>9} {:>9}  {}\n    hint: {hint}",
                    result.column,
                    kind,
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    result.verdict()
                )
                .map_err(write_err)?;
                if let Some(line) = missing_line(result, r.rows, c.rows, alpha) {
                    writeln!(out, "    missing: {line}").map_err(write_err)?;
                }
            }
            continue;
        };
        if json {
            let mut object = serde_json::json!({
                "column": result.column,
                "kind": result.kind,
                "verdict": d.verdict.as_str(),
                "adjusted_p_value": d.adjusted_p_value,
                "hint": d.hint,
                "missing_reference": result.missing_reference,
                "missing_current": result.missing_current,
                "missing_p_value": result.missing_p_value,
            });
            match &d.comparison {
                Comparison::Numeric(n) => {
                    object["ks"] = n.ks.into();
                    object["ks_error_bound"] = n.ks_error_bound.into();
                    object["p_value"] = n.p_value.into();
                    object["psi"] = n.psi.into();
                    object["psi_no_drift_quantile"] = n.psi_no_drift_quantile.into();
                    object["wasserstein"] = serde_json::json!(n.wasserstein_normalized);
                    object["wasserstein_raw"] = serde_json::json!(n.wasserstein);
                    object["n_reference"] = n.n_reference.into();
                    object["n_current"] = n.n_current.into();
                }
                Comparison::Categorical(k) => {
                    object["ks"] = serde_json::Value::Null;
                    object["ks_error_bound"] = serde_json::Value::Null;
                    object["p_value"] = k.p_value.into();
                    object["psi"] = k.psi.into();
                    object["psi_no_drift_quantile"] = k.psi_no_drift_quantile.into();
                    object["wasserstein"] = serde_json::Value::Null;
                    object["chi_square"] = k.chi_square.into();
                    object["jensen_shannon"] = k.jensen_shannon.into();
                    object["approximate"] = k.approximate.into();
                    object["n_reference"] = k.n_reference.into();
                    object["n_current"] = k.n_current.into();
                }
            }
            writeln!(out, "{object}").map_err(write_err)?;
        } else {
            let line = match &d.comparison {
                Comparison::Numeric(n) => format!(
                    "{:<28} {:<12} {:>16} {:>10.3e} {:>10.3e} {:>9.4} {:>9}  {}",
                    result.column,
                    "numeric",
                    format!("{:.4} ± {:.4}", n.ks, n.ks_error_bound),
                    n.p_value,
                    d.adjusted_p_value,
                    n.psi,
                    n.wasserstein_normalized
                        .map_or("-".into(), |w| format!("{w:.4}")),
                    d.verdict.as_str()
                ),
                Comparison::Categorical(k) => format!(
                    "{:<28} {:<12} {:>16} {:>10.3e} {:>10.3e} {:>9.4} {:>9}  {}",
                    result.column,
                    "categorical",
                    format!("JS {:.4}", k.jensen_shannon),
                    k.p_value,
                    d.adjusted_p_value,
                    k.psi,
                    "-",
                    d.verdict.as_str()
                ),
            };
            writeln!(out, "{line}").map_err(write_err)?;
            if let Some(hint) = &d.hint {
                writeln!(out, "    hint: {hint}").map_err(write_err)?;
            }
        }
        if !json && let Some(line) = missing_line(result, r.rows, c.rows, alpha) {
            writeln!(out, "    missing: {line}").map_err(write_err)?;
        }
    }
    out.flush().map_err(write_err)
}

/// The `missing:` line of a column with missing values in either file: counts, shares, and
/// the test of equal shares when it rejects at `alpha`.
fn missing_line(
    result: &modelgate::drift::table::ColumnDrift,
    reference_rows: u64,
    current_rows: u64,
    alpha: f64,
) -> Option<String> {
    let p_value = result.missing_p_value?;
    let share = |missing: u64, rows: u64| 100.0 * missing as f64 / rows.max(1) as f64;
    let mut line = format!(
        "{} of {reference_rows} reference rows ({:.2}%), {} of {current_rows} current rows ({:.2}%), left out of the statistics",
        result.missing_reference,
        share(result.missing_reference, reference_rows),
        result.missing_current,
        share(result.missing_current, current_rows),
    );
    if p_value < alpha {
        line.push_str(&format!(
            "; the share changed (two-proportion z-test p = {p_value:.3e})"
        ));
    }
    Some(line)
}

fn abtest(
    input: &Path,
    metric: Option<&str>,
    control: Option<&str>,
    weights: Option<&str>,
    alpha: f64,
    margin: f64,
    json: bool,
) -> Result<(), String> {
    use modelgate::stats::{Experiment, MetricKind, Policy, Variant, fixed, table};
    let metric = match metric {
        None => None,
        Some("binary") => Some(MetricKind::Binary),
        Some("continuous") => Some(MetricKind::Continuous),
        Some(other) => {
            return Err(format!(
                "--metric must be binary or continuous, got {other:?}"
            ));
        }
    };
    let text = std::fs::read_to_string(input)
        .map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let parsed =
        table::parse_csv(&text, metric).map_err(|e| format!("{}: {e}", input.display()))?;
    let weights = table::parse_weights(weights, &parsed.names).map_err(|e| e.to_string())?;
    let control = table::pick_control(&parsed.names, control).map_err(|e| e.to_string())?;
    let policy = Policy {
        metric: parsed.samples[0].kind(),
        alpha,
        margin,
        ..Policy::default()
    };
    let experiment = Experiment {
        variants: parsed
            .names
            .iter()
            .zip(&parsed.samples)
            .zip(&weights)
            .map(|((name, sample), weight)| Variant::new(name.clone(), *weight, *sample))
            .collect(),
        control,
        elapsed: std::time::Duration::ZERO,
    };
    let evaluation = policy.evaluate(&experiment).map_err(|e| e.to_string())?;
    let interval = |i: Option<modelgate::stats::Interval>| {
        i.map_or(serde_json::Value::Null, |i| {
            serde_json::json!([i.lower, i.upper])
        })
    };
    let show = |i: Option<modelgate::stats::Interval>| {
        i.map_or("-".to_owned(), |i| {
            format!("[{:.4}, {:.4}]", i.lower, i.upper)
        })
    };
    let number = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.4}"));
    let reason = |d: &modelgate::stats::Decision| match d {
        modelgate::stats::Decision::Continue { reason, .. }
        | modelgate::stats::Decision::Inconclusive { reason, .. } => Some(reason.as_str()),
        _ => None,
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let write_err = |e: std::io::Error| format!("cannot write output: {e}");
    if json {
        let variants: Vec<serde_json::Value> = experiment
            .variants
            .iter()
            .map(|v| {
                serde_json::json!({
                    "variant": v.name,
                    "control": v.name == experiment.variants[control].name,
                    "n": v.primary.n(),
                    // No observations, no mean (whatever the file's row says).
                    "mean": (v.primary.n() > 0).then(|| v.primary.mean()),
                    "ci": interval(fixed::mean_interval(&v.primary, alpha).ok()),
                    "weight": v.weight,
                })
            })
            .collect();
        let comparisons: Vec<serde_json::Value> = evaluation
            .comparisons
            .iter()
            .map(|c| {
                let e = &c.primary;
                let reason = reason(&c.decision);
                serde_json::json!({
                    "variant": c.variant,
                    "control": e.control,
                    "lift": e.lift,
                    "lift_ci": interval(e.lift_ci),
                    "absolute_lift": e.absolute_lift,
                    "absolute_lift_ci": interval(e.absolute_ci),
                    "p_value": e.p_value,
                    "sequential_p_value": e.sequential_p_value,
                    "sequential_lift_ci": interval(e.sequential_lift),
                    "tau2": e.tau2,
                    "probability_better": e.probability_better,
                    "srm_p_value": evaluation.srm_p_value,
                    "decision": c.decision.as_str(),
                    "reason": reason,
                })
            })
            .collect();
        let object = serde_json::json!({
            "metric": policy.metric.as_str(),
            "alpha": alpha,
            "margin": margin,
            "variants": variants,
            "comparisons": comparisons,
            "srm_p_value": evaluation.srm_p_value,
            "decision": evaluation.decision.as_str(),
        });
        writeln!(out, "{object}").map_err(write_err)?;
    } else {
        writeln!(
            out,
            "{} metric, control {}, alpha {alpha}, margin {margin}; SRM p = {:.4}{}",
            policy.metric.as_str(),
            experiment.variants[control].name,
            evaluation.srm_p_value,
            if evaluation.srm_flagged {
                " (MISMATCH: no winner can be declared)"
            } else {
                ""
            }
        )
        .map_err(write_err)?;
        writeln!(out, "{:<20} {:>12} {:>14}  CI", "variant", "n", "mean").map_err(write_err)?;
        for v in &experiment.variants {
            let mean = if v.primary.n() > 0 {
                format!("{:.6}", v.primary.mean())
            } else {
                "-".to_owned()
            };
            writeln!(
                out,
                "{:<20} {:>12} {:>14}  {}",
                v.name,
                v.primary.n(),
                mean,
                show(fixed::mean_interval(&v.primary, alpha).ok())
            )
            .map_err(write_err)?;
        }
        writeln!(
            out,
            "\n{:<20} {:>9} {:>20} {:>10} {:>10} {:>20}  decision",
            "candidate", "lift", "lift CI", "p", "seq. p", "always-valid CI"
        )
        .map_err(write_err)?;
        for c in &evaluation.comparisons {
            let e = &c.primary;
            writeln!(
                out,
                "{:<20} {:>9} {:>20} {:>10} {:>10} {:>20}  {}",
                c.variant,
                number(e.lift),
                show(e.lift_ci),
                number(e.p_value),
                number(e.sequential_p_value),
                show(e.sequential_lift),
                match reason(&c.decision) {
                    Some(why) => format!("{} ({why})", c.decision.as_str()),
                    None => c.decision.as_str().to_owned(),
                }
            )
            .map_err(write_err)?;
        }
    }
    out.flush().map_err(write_err)
}

fn default_data() -> PathBuf {
    let local = PathBuf::from("data/elec2.csv");
    if local.exists() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/elec2.csv")
    }
}

fn demo(
    options: modelgate::sidecar::demo::DemoOptions,
    summary_json: Option<PathBuf>,
    keep: bool,
) -> Result<(), String> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let dir = options.dir.clone();
    println!(
        "modelgate demo: Elec2 replay, {} rows after the first {}, directory {}",
        options.rows,
        options.first_period,
        dir.display()
    );
    let (handle, summary) = modelgate::sidecar::demo::run(options, Box::new(std::io::stdout()))
        .map_err(|e| e.to_string())?;
    print!("{}", modelgate::sidecar::demo::render(&summary));
    let path = summary_json.unwrap_or_else(|| dir.join("summary.json"));
    let json = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
    std::fs::write(&path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("  summary JSON      {}", path.display());
    if summary.failed_requests > 0 {
        return Err(format!("{} requests failed", summary.failed_requests));
    }
    if keep {
        println!(
            "The sidecar keeps running on {url}; Ctrl-C to stop. Try:\n  MODELGATE_ADMIN_TOKEN={token} modelgate status --url {url}\n  curl {url}/metrics",
            url = handle.url(),
            token = handle.admin_token()
        );
        loop {
            std::thread::park();
        }
    }
    Ok(())
}
