//! The external-command trainer.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{
    StopSignal, TrainError, TrainProgress, TrainedModel, Trainer, TrainingJob, check_job,
    check_rows, create_output_dir, elapsed_ms, output_stem, sha256_hex,
};
use crate::artifact::{ArtifactError, LabelKind, MAX_ARTIFACT_BYTES, ModelArtifact};

/// The name of the time column in the CSV file given to the command.
pub const COMMAND_TIMESTAMP_COLUMN: &str = "timestamp_ms";

/// Stderr lines kept for error messages.
const TAIL_LINES: usize = 20;
/// Longest stderr line kept for error messages, in bytes.
const TAIL_LINE_BYTES: usize = 1000;
/// How long to wait for the command's stderr to close after it exited or was killed.
const STDERR_GRACE: Duration = Duration::from_secs(2);

/// Trains by running an external program, for models modelgate does not fit itself (a
/// scikit-learn script, a notebook runner, a container).
///
/// For each job it:
///
/// 1. writes the training rows as CSV to `{output_dir}/{name}-run{run_id}-data.csv`: header
///    `timestamp_ms`, the job's features in order, then the label column (binary labels as
///    `1` for the positive value and `0`), one row per training row, oldest first;
/// 2. runs `program` with `args`, where `{data}`, `{output}`, `{run_id}` and `{name}` are
///    replaced by the data file, the artifact path `{output_dir}/{name}-run{run_id}.json`, the
///    run id and the model name, and with the environment variables `MODELGATE_DATA`,
///    `MODELGATE_OUTPUT`, `MODELGATE_RUN_ID`, `MODELGATE_MODEL_NAME`, `MODELGATE_FEATURES` (a
///    JSON array), `MODELGATE_LABEL`, `MODELGATE_LABEL_KIND` and, for a binary label,
///    `MODELGATE_POSITIVE`, on top of the sidecar's own environment minus
///    [`env_remove`](Self::env_remove); stdin is empty, stdout and stderr go to the log
///    `{output_dir}/{name}-run{run_id}.log`;
/// 3. kills it (on Unix its whole process group) when it runs longer than `timeout`;
/// 4. deletes the data file, then reads the artifact the program wrote at the output path,
///    validates it and checks that it fits the job: its features are among the job's, its
///    label kind and positive value are the job's;
/// 5. if the program also wrote a metrics JSON object (name → number) at `{metrics}` /
///    `MODELGATE_METRICS` (`{output_dir}/{name}-run{run_id}.metrics.json`), merges it into
///    the artifact's `metrics` (non-numbers or non-finite values are an error).
///
/// A failure to start, a non-zero exit, a timeout, or a missing or invalid artifact is a
/// [`TrainError`] with the log path and the last lines of stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTrainer {
    /// The program (looked up in `PATH` when it has no `/`).
    pub program: String,
    /// Its arguments, with placeholders.
    pub args: Vec<String>,
    /// Longest run allowed (default one hour).
    pub timeout: Duration,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Variables of the sidecar's environment not to pass on (the command inherits the rest,
    /// so list secrets such as the admin token's variable here).
    pub env_remove: Vec<String>,
    /// The working directory (default: the sidecar's).
    pub current_dir: Option<PathBuf>,
}

impl CommandTrainer {
    /// A trainer running `argv` (the program, then its arguments), with a one-hour timeout
    /// and no extra environment.
    ///
    /// # Errors
    /// [`TrainError::Config`] when `argv` is empty or the program is an empty string.
    pub fn new(argv: impl IntoIterator<Item = impl Into<String>>) -> Result<Self, TrainError> {
        let mut argv = argv.into_iter().map(Into::into);
        let program: String = argv
            .next()
            .filter(|p: &String| !p.is_empty())
            .ok_or_else(|| TrainError::Config("the command must name a program".into()))?;
        Ok(CommandTrainer {
            program,
            args: argv.collect(),
            timeout: Duration::from_secs(3600),
            env: Vec::new(),
            env_remove: Vec::new(),
            current_dir: None,
        })
    }

    /// This trainer with timeout `timeout`.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// This trainer with the extra environment variable `key=value`.
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// This trainer without the sidecar's environment variable `key`.
    #[must_use]
    pub fn env_remove(mut self, key: impl Into<String>) -> Self {
        self.env_remove.push(key.into());
        self
    }

    /// This trainer running in `dir`.
    #[must_use]
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }
}

/// Replaces `{data}`, `{output}`, `{run_id}` and `{name}` in one pass (a substituted value
/// is never substituted again); other braces stay.
pub(super) fn substitute(arg: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    'outer: while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let tail = &rest[open..];
        for (key, value) in values {
            if let Some(after) = tail
                .strip_prefix('{')
                .and_then(|t| t.strip_prefix(key))
                .and_then(|t| t.strip_prefix('}'))
            {
                out.push_str(value);
                rest = after;
                continue 'outer;
            }
        }
        out.push('{');
        rest = &tail[1..];
    }
    out.push_str(rest);
    out
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains([',', '"', '\n', '\r']) || text.trim() != text {
        format!("\"{}\"", text.replace('"', "\"\"")).into()
    } else {
        text.into()
    }
}

/// Checks a job whose rows go to an external trainer's data file: its stop signal is not
/// raised (nothing starts then), [`check_job`], [`check_rows`], and no column named like the
/// file's time column. Gives the job's columns in the data.
pub(super) fn check_data_file_job(job: &TrainingJob<'_>) -> Result<Vec<usize>, TrainError> {
    if job.stop.is_raised() {
        return Err(TrainError::Stopped);
    }
    let columns = check_job(job)?;
    check_rows(job)?;
    if job.features.iter().any(|f| f == COMMAND_TIMESTAMP_COLUMN)
        || job.label.name == COMMAND_TIMESTAMP_COLUMN
    {
        return Err(TrainError::InvalidJob(format!(
            "`{COMMAND_TIMESTAMP_COLUMN}` is reserved for the time column of the data file external trainers read"
        )));
    }
    Ok(columns)
}

/// Writes the job's rows as the CSV file external trainers read (see [`CommandTrainer`]),
/// through a temporary file and a rename.
pub(super) fn write_data_csv(
    job: &TrainingJob<'_>,
    columns: &[usize],
    path: &Path,
) -> Result<(), TrainError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    write_data_csv_to(job, columns, &tmp)?;
    std::fs::rename(&tmp, path).map_err(|source| TrainError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write_data_csv_to(
    job: &TrainingJob<'_>,
    columns: &[usize],
    path: &Path,
) -> Result<(), TrainError> {
    let io = |source| TrainError::Io {
        path: path.to_owned(),
        source,
    };
    let mut out = BufWriter::new(File::create(path).map_err(io)?);
    let mut header = vec![csv_field(COMMAND_TIMESTAMP_COLUMN)];
    header.extend(job.features.iter().map(|f| csv_field(f)));
    header.push(csv_field(&job.label.name));
    writeln!(out, "{}", header.join(",")).map_err(io)?;
    let binary = job.label.kind == LabelKind::Binary;
    for ((row, &y), &t) in job
        .data
        .rows()
        .zip(job.data.labels())
        .zip(job.data.timestamps())
    {
        write!(out, "{t}").map_err(io)?;
        for &c in columns {
            write!(out, ",{}", row[c]).map_err(io)?;
        }
        if binary {
            writeln!(out, ",{}", u8::from(y == 1.0)).map_err(io)?;
        } else {
            writeln!(out, ",{y}").map_err(io)?;
        }
    }
    out.flush().map_err(io)?;
    out.into_inner()
        .map_err(|e| io(e.into_error()))?
        .sync_all()
        .map_err(io)
}

/// Reads the child's stderr line by line into the log, keeping the last lines; sends the
/// tail when stderr closes.
fn spawn_stderr_reader(stderr: std::process::ChildStderr, mut log: File) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let _ = log.write_all(&line);
                    let text = String::from_utf8_lossy(&line);
                    let mut text = text.trim_end().to_owned();
                    if text.len() > TAIL_LINE_BYTES {
                        let mut cut = TAIL_LINE_BYTES;
                        while !text.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        text.truncate(cut);
                        text.push('…');
                    }
                    if tail.len() == TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(text);
                }
            }
        }
        let _ = log.flush();
        let _ = tx.send(Vec::from(tail).join("\n"));
    });
    rx
}

/// Kills the child and, on Unix, its process group (the child leads its own group).
fn kill_tree(child: &mut Child) {
    #[cfg(unix)]
    {
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", child.id())])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = child.kill();
}

/// Waits for the child until `timeout`, or until `stop` is raised; `None` when it is still
/// running then.
fn wait_until(
    child: &mut Child,
    timeout: Duration,
    stop: &StopSignal,
) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        if stop.sleep(pause.min(deadline - now)) {
            return Ok(None);
        }
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

impl Trainer for CommandTrainer {
    fn train(
        &self,
        job: &TrainingJob<'_>,
        progress: &mut dyn FnMut(TrainProgress),
    ) -> Result<TrainedModel, TrainError> {
        if self.program.is_empty() {
            return Err(TrainError::Config("the command's program is empty".into()));
        }
        if self.timeout.is_zero() {
            return Err(TrainError::Config("the command's timeout is zero".into()));
        }
        let columns = check_data_file_job(job)?;
        progress(TrainProgress::Started {
            rows: job.data.len(),
            features: columns.len(),
        });

        create_output_dir(&job.output_dir)?;
        let stem = output_stem(&job.model_name, job.run_id);
        let data_path = job.output_dir.join(format!("{stem}-data.csv"));
        let output = job.output_dir.join(format!("{stem}.json"));
        let log_path = job.output_dir.join(format!("{stem}.log"));
        match std::fs::remove_file(&output) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(TrainError::Io {
                    path: output,
                    source,
                });
            }
        }
        let _ = std::fs::remove_file(metrics_path_of(&output));
        let result = write_data_csv(job, &columns, &data_path)
            .and_then(|()| self.run(job, &data_path, &output, &log_path, progress));
        let _ = std::fs::remove_file(&data_path);
        let stderr_tail = result?;

        let invalid = |source: ArtifactError| TrainError::InvalidArtifact {
            path: output.clone(),
            source: Box::new(source),
            log: Some(log_path.clone()),
            stderr_tail: stderr_tail.clone(),
        };
        let metrics_path = metrics_path_of(&output);
        let (artifact, bytes) = read_output(&output, &metrics_path, job).map_err(invalid)?;
        let _ = std::fs::remove_file(&metrics_path);
        let sha256 = sha256_hex(&bytes);
        progress(TrainProgress::ArtifactWritten {
            path: output.clone(),
            sha256: sha256.clone(),
        });
        Ok(TrainedModel {
            artifact,
            artifact_path: output,
            sha256,
            log: Some(log_path),
            external_run: None,
        })
    }
}

impl CommandTrainer {
    /// Runs the command; its stderr tail on success.
    fn run(
        &self,
        job: &TrainingJob<'_>,
        data: &Path,
        output: &Path,
        log_path: &Path,
        progress: &mut dyn FnMut(TrainProgress),
    ) -> Result<String, TrainError> {
        let log_io = |source| TrainError::Io {
            path: log_path.to_owned(),
            source,
        };
        File::create(log_path).map_err(log_io)?;
        let mut log = OpenOptions::new()
            .append(true)
            .open(log_path)
            .map_err(log_io)?;
        let run_id = job.run_id.to_string();
        let (data_s, output_s) = (data.to_string_lossy(), output.to_string_lossy());
        let metrics_path = metrics_path_of(output);
        let metrics_s = metrics_path.to_string_lossy();
        let values = [
            ("data", data_s.as_ref()),
            ("output", output_s.as_ref()),
            ("metrics", metrics_s.as_ref()),
            ("run_id", run_id.as_str()),
            ("name", job.model_name.as_str()),
        ];
        let args: Vec<String> = self.args.iter().map(|a| substitute(a, &values)).collect();
        writeln!(log, "$ {} {}", self.program, args.join(" ")).map_err(log_io)?;

        let mut command = Command::new(&self.program);
        command
            .args(&args)
            .env("MODELGATE_DATA", data)
            .env("MODELGATE_OUTPUT", output)
            .env("MODELGATE_METRICS", &metrics_path)
            .env("MODELGATE_RUN_ID", &run_id)
            .env("MODELGATE_MODEL_NAME", &job.model_name)
            .env(
                "MODELGATE_FEATURES",
                serde_json::Value::from(job.features.clone()).to_string(),
            )
            .env("MODELGATE_LABEL", &job.label.name)
            .env("MODELGATE_LABEL_KIND", job.label.kind.as_str())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(log_io)?)
            .stderr(Stdio::piped());
        for key in &self.env_remove {
            command.env_remove(key);
        }
        if let Some(positive) = &job.label.positive {
            command.env("MODELGATE_POSITIVE", positive);
        }
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);

        let started = Instant::now();
        let mut child = command.spawn().map_err(|source| TrainError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        tracing::info!(
            model = %job.model_name,
            run_id = job.run_id,
            program = %self.program,
            pid = child.id(),
            log = %log_path.display(),
            "training command started"
        );
        progress(TrainProgress::CommandStarted {
            program: self.program.clone(),
            log: log_path.to_owned(),
        });
        let tail = match child.stderr.take() {
            Some(stderr) => Some(spawn_stderr_reader(
                stderr,
                log.try_clone().map_err(log_io)?,
            )),
            None => None,
        };
        let waited = wait_until(&mut child, self.timeout, &job.stop);
        let status = match waited {
            Ok(Some(status)) => Some(status),
            Ok(None) | Err(_) => {
                kill_tree(&mut child);
                let _ = child.wait();
                None
            }
        };
        let stderr_tail = tail
            .and_then(|rx| rx.recv_timeout(STDERR_GRACE).ok())
            .unwrap_or_default();
        let elapsed = elapsed_ms(started);
        match (status, waited) {
            (Some(status), _) if status.success() => {
                tracing::info!(model = %job.model_name, run_id = job.run_id, elapsed_ms = elapsed, "training command finished");
                progress(TrainProgress::CommandFinished {
                    elapsed_ms: elapsed,
                });
                Ok(stderr_tail)
            }
            (Some(status), _) => {
                let _ = writeln!(log, "modelgate: the command failed ({status})");
                tracing::warn!(model = %job.model_name, run_id = job.run_id, %status, log = %log_path.display(), "training command failed");
                Err(TrainError::CommandFailed {
                    program: self.program.clone(),
                    status: status.to_string(),
                    code: status.code(),
                    log: log_path.to_owned(),
                    stderr_tail,
                })
            }
            (None, Err(source)) => Err(TrainError::Io {
                path: PathBuf::from(&self.program),
                source,
            }),
            (None, Ok(_)) if job.stop.is_raised() => {
                let _ = writeln!(log, "modelgate: killed: the sidecar is shutting down");
                tracing::warn!(model = %job.model_name, run_id = job.run_id, log = %log_path.display(), "training command killed: the sidecar is shutting down");
                Err(TrainError::Stopped)
            }
            (None, Ok(_)) => {
                let _ = writeln!(
                    log,
                    "modelgate: killed after the timeout of {:?}",
                    self.timeout
                );
                tracing::warn!(model = %job.model_name, run_id = job.run_id, timeout = ?self.timeout, log = %log_path.display(), "training command timed out and was killed");
                Err(TrainError::Timeout {
                    program: self.program.clone(),
                    timeout: self.timeout,
                    log: log_path.to_owned(),
                    stderr_tail,
                })
            }
        }
    }
}

fn read_artifact(path: &Path) -> Result<Vec<u8>, ArtifactError> {
    let io = |source| ArtifactError::Io {
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_ARTIFACT_BYTES {
        return Err(ArtifactError::TooLarge {
            path: path.to_owned(),
        });
    }
    std::fs::read(path).map_err(io)
}

/// Reads an external trainer's artifact and its optional metrics JSON object (merged into
/// the artifact's `metrics`), validates both and checks that the artifact answers the job;
/// gives the artifact and the artifact file's bytes.
pub(super) fn read_output(
    artifact_path: &Path,
    metrics_path: &Path,
    job: &TrainingJob<'_>,
) -> Result<(ModelArtifact, Vec<u8>), ArtifactError> {
    let bytes = read_artifact(artifact_path)?;
    let mut artifact = ModelArtifact::from_json(&bytes)?;
    if let Ok(text) = std::fs::read(metrics_path) {
        let metrics: std::collections::BTreeMap<String, f64> = serde_json::from_slice(&text)
            .map_err(|e| ArtifactError::Inconsistent {
                field: "metrics JSON",
                reason: format!(
                    "{}: {e} (expected an object of numbers)",
                    metrics_path.display()
                ),
            })?;
        if let Some((name, _)) = metrics.iter().find(|(_, v)| !v.is_finite()) {
            return Err(ArtifactError::NonFinite {
                field: format!("metrics JSON `{name}`"),
            });
        }
        artifact.metrics.extend(metrics);
    }
    fits_job(&artifact, job)?;
    Ok((artifact, bytes))
}

/// Checks that an external trainer's artifact answers the job.
fn fits_job(artifact: &ModelArtifact, job: &TrainingJob<'_>) -> Result<(), ArtifactError> {
    if let Some(f) = artifact.features.iter().find(|f| !job.features.contains(f)) {
        return Err(ArtifactError::Inconsistent {
            field: "features",
            reason: format!("`{f}` is not one of the job's features"),
        });
    }
    if artifact.label.kind != job.label.kind {
        return Err(ArtifactError::Inconsistent {
            field: "label.kind",
            reason: format!(
                "the job's label is {}, the artifact's {}",
                job.label.kind.as_str(),
                artifact.label.kind.as_str()
            ),
        });
    }
    if artifact.label.positive != job.label.positive {
        return Err(ArtifactError::Inconsistent {
            field: "label.positive",
            reason: format!(
                "the job's positive value is {:?}, the artifact's {:?}",
                job.label.positive, artifact.label.positive
            ),
        });
    }
    Ok(())
}

/// Where a command may write its metrics JSON, next to the artifact.
fn metrics_path_of(output: &Path) -> std::path::PathBuf {
    output.with_extension("metrics.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_substituted_once() {
        let values = [
            ("data", "/d/{output}"),
            ("output", "/o.json"),
            ("run_id", "7"),
        ];
        assert_eq!(
            substitute("--data={data} --out {output} {run_id}{x} {", &values),
            "--data=/d/{output} --out /o.json 7{x} {"
        );
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
