//! The measured processes: the fake API server, `cert-sync` and
//! `naive-watcher`, each its own OS process so `/proc/<pid>/status` gives
//! each one's memory alone (the fake holds every Secret; in-process it
//! would swamp the controller's figures).
//!
//! A [`Proc`] is killed when dropped, so an error anywhere in the bench
//! leaves nothing running. The release profile aborts on panic, which skips
//! destructors, so the pids are also kept in a registry that a panic hook
//! ([`kill_children_on_panic`]) kills before the abort.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// Pids of the children alive now, for the panic hook.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Installs a panic hook that SIGKILLs every live child, then runs the
/// previous hook.
pub fn kill_children_on_panic() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let pids: Vec<String> = LIVE
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(u32::to_string)
            .collect();
        if !pids.is_empty() {
            let _ = std::process::Command::new("kill")
                .arg("-KILL")
                .args(&pids)
                .status();
        }
        previous(info);
    }));
}

/// The directory holding this bench's binary, where cargo also puts the
/// binaries it runs (same profile, same target directory).
pub fn bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the bench binary")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("the bench binary has no parent directory")
}

/// Builds `fake-apiserver`, `cert-sync` and `naive-watcher` in the release
/// profile (cargo skips what is up to date).
pub fn build_binaries() -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(certsync_e2e::workspace_root())
        .args(["build", "--release", "--locked", "--quiet"])
        .args(["-p", "certsync-fakekube", "--bin", "fake-apiserver"])
        .args([
            "-p",
            "cert-sync",
            "--bin",
            "cert-sync",
            "--bin",
            "naive-watcher",
        ])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of the benchmarked binaries failed ({status})");
    }
    Ok(())
}

/// Memory of a process from `/proc/<pid>/status`, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// `VmHWM`: peak resident set size.
    pub peak_kib: u64,
    /// `VmRSS`: resident set size now.
    pub rss_kib: u64,
}

/// A child process, killed on drop. stdout is either piped (read with
/// [`Proc::wait_for_line`], then drained into the log) or the log itself;
/// stderr always goes to the log.
pub struct Proc {
    name: String,
    child: Child,
    pid: u32,
    log: PathBuf,
    stdout: Option<Lines<BufReader<ChildStdout>>>,
}

impl Proc {
    /// Starts `cmd`; `pipe_stdout` keeps stdout for [`Proc::wait_for_line`].
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf, pipe_stdout: bool) -> Result<Proc> {
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let stdout = if pipe_stdout {
            Stdio::piped()
        } else {
            Stdio::from(file.try_clone()?)
        };
        cmd.stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::from(file))
            .kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        let pid = child.id().with_context(|| format!("{name} has no pid"))?;
        LIVE.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(pid);
        let stdout = child.stdout.take().map(|out| BufReader::new(out).lines());
        Ok(Proc {
            name: name.to_owned(),
            child,
            pid,
            log,
            stdout,
        })
    }

    /// Waits up to `timeout` for a stdout line starting with `prefix` and
    /// returns it; afterwards stdout is drained into the log in the
    /// background so the child never blocks on a full pipe.
    pub async fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> Result<String> {
        let mut lines = self
            .stdout
            .take()
            .with_context(|| format!("{}'s stdout is not piped", self.name))?;
        let found = tokio::time::timeout(timeout, async {
            while let Some(line) = lines.next_line().await? {
                if line.starts_with(prefix) {
                    return Ok(Some(line));
                }
            }
            Ok::<_, std::io::Error>(None)
        })
        .await;
        let line = match found {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => bail!(
                "{} closed stdout before printing {prefix:?}{}",
                self.name,
                self.log_tail()
            ),
            Ok(Err(e)) => return Err(e).context(format!("reading {}'s stdout", self.name)),
            Err(_) => bail!(
                "{} did not print {prefix:?} within {timeout:?}{}",
                self.name,
                self.log_tail()
            ),
        };
        let log = self.log.clone();
        tokio::spawn(async move {
            let Ok(mut file) = tokio::fs::OpenOptions::new().append(true).open(log).await else {
                return;
            };
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = file.write_all(format!("{line}\n").as_bytes()).await;
            }
        });
        Ok(line)
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}){}", self.name, self.log_tail());
        }
        Ok(())
    }

    /// `VmHWM` and `VmRSS` now.
    pub fn memory(&self) -> Result<Memory> {
        let path = format!("/proc/{}/status", self.pid);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let field = |name: &str| -> Result<u64> {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .with_context(|| format!("no {name} in {path}"))
        };
        Ok(Memory {
            peak_kib: field("VmHWM:")?,
            rss_kib: field("VmRSS:")?,
        })
    }

    /// User plus system CPU time consumed so far (`/proc/<pid>/stat`,
    /// assuming the usual 100 clock ticks per second).
    pub fn cpu_seconds(&self) -> Result<f64> {
        let path = format!("/proc/{}/stat", self.pid);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        // Fields after the parenthesised command name, which may hold spaces.
        let rest = text
            .rsplit_once(')')
            .map(|(_, r)| r)
            .with_context(|| format!("malformed {path}"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line; `rest`
        // starts at field 3.
        let ticks = |i: usize| -> Result<u64> {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .with_context(|| format!("malformed {path}"))
        };
        Ok((ticks(11)? + ticks(12)?) as f64 / 100.0)
    }

    /// The last lines of the log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("\n--- last lines of {} ---\n{tail}", self.log.display())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        // Reap it, so it does not linger as a zombie while the bench runs on.
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_)) | Err(_)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        LIVE.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|p| *p != self.pid);
    }
}
