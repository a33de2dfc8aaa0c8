//! Child processes the harness owns — the fake API server, `cert-sync`
//! (central controller and per-pod writers), `naive-watcher` — and the
//! cargo build that produces them.
//!
//! A [`Proc`] is killed (SIGKILL) and reaped when dropped, so an error or a
//! failed assertion anywhere leaves nothing running. Release binaries abort
//! on panic, which skips destructors, so the pids are also kept in a
//! registry that a panic hook ([`kill_children_on_panic`]) kills first.
//!
//! Everything here is blocking: the tests and the demo are plain threads;
//! async callers wrap [`Proc::wait_for_line`] in `block_in_place`.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Pids of the children alive now, for the panic hook.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Installs a panic hook that SIGKILLs every live child, then runs the
/// previous hook. Needed where panics abort (release profile); harmless
/// elsewhere.
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
            let _ = Command::new("kill").arg("-KILL").args(&pids).status();
        }
        previous(info);
    }));
}

/// Adds a child spawned elsewhere (Envoy) to what the panic hook kills.
pub fn register(pid: u32) {
    LIVE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(pid);
}

/// Removes a child that has been reaped from what the panic hook kills.
pub fn unregister(pid: u32) {
    LIVE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|p| *p != pid);
}

/// The directory cargo puts this profile's binaries in: that of the running
/// executable, or its parent for test executables (`<profile>/deps/`). It
/// follows `CARGO_TARGET_DIR` and the profile without being told.
pub fn bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running executable")?;
    let dir = exe
        .parent()
        .context("the running executable has no parent directory")?;
    Ok(if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().unwrap_or(dir).to_path_buf()
    } else {
        dir.to_path_buf()
    })
}

/// A binary in a workspace package: `(package, binary)`.
pub type BinSpec = (&'static str, &'static str);

/// The binaries a local cluster runs.
pub const CLUSTER_BINARIES: [BinSpec; 2] = [
    ("certsync-fakekube", "fake-apiserver"),
    ("cert-sync", "cert-sync"),
];

/// Builds `bins` with cargo into [`bin_dir`] (same target directory and
/// profile as the running executable; cargo skips what is up to date) and
/// returns that directory.
pub fn build_binaries(bins: &[BinSpec]) -> Result<PathBuf> {
    let dir = bin_dir()?;
    let profile = dir
        .file_name()
        .and_then(|n| n.to_str())
        .map_or("debug", |n| n)
        .to_owned();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(crate::workspace_root())
        .args(["build", "--locked", "--quiet"]);
    if profile != "debug" {
        command.args(["--profile", &profile]);
    }
    for (package, bin) in bins {
        command.args(["-p", package, "--bin", bin]);
    }
    // Binaries land next to the running executable: keep its target directory.
    if let Some(target) = dir.parent() {
        command.env("CARGO_TARGET_DIR", target);
    }
    let status = command.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of {bins:?} failed ({status})");
    }
    Ok(dir)
}

/// Set to a directory holding prebuilt `fake-apiserver` and `cert-sync`
/// binaries, to use them as they are instead of building.
pub const BIN_DIR_ENV: &str = "CERTSYNC_E2E_BIN_DIR";

/// [`build_binaries`] of [`CLUSTER_BINARIES`], once per process, unless
/// `$CERTSYNC_E2E_BIN_DIR` names prebuilt ones.
pub fn cluster_binaries() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        for (_, bin) in CLUSTER_BINARIES {
            if !dir.join(bin).is_file() {
                bail!("{BIN_DIR_ENV}={} holds no {bin}", dir.display());
            }
        }
        return Ok(dir);
    }
    static BUILT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_binaries(&CLUSTER_BINARIES).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
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
    stdout: Option<Receiver<String>>,
}

impl Proc {
    /// Starts `cmd`; `pipe_stdout` keeps stdout for [`Proc::wait_for_line`].
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf, pipe_stdout: bool) -> Result<Proc> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let stdout = if pipe_stdout {
            Stdio::piped()
        } else {
            Stdio::from(file.try_clone()?)
        };
        cmd.stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::from(file));
        let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        let pid = child.id();
        register(pid);
        let stdout = child
            .stdout
            .take()
            .map(|out| forward_lines(out, log.clone()));
        Ok(Proc {
            name: name.to_owned(),
            child,
            pid,
            log,
            stdout,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Waits up to `timeout` for a stdout line starting with `prefix` and
    /// returns it. Every line also goes to the log, so the child never
    /// blocks on a full pipe.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> Result<String> {
        let lines = self
            .stdout
            .as_ref()
            .with_context(|| format!("{}'s stdout is not piped", self.name))?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return Ok(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => bail!(
                    "{} did not print {prefix:?} within {timeout:?}{}",
                    self.name,
                    self.log_tail()
                ),
                Err(RecvTimeoutError::Disconnected) => bail!(
                    "{} closed stdout before printing {prefix:?}{}",
                    self.name,
                    self.log_tail()
                ),
            }
        }
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}){}", self.name, self.log_tail());
        }
        Ok(())
    }

    /// Sends `signal` (a `kill -<signal>` name: `STOP`, `CONT`, `TERM`).
    pub fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -{signal} {} ({}) failed", self.pid, self.name);
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

    /// SIGKILLs the process (a stopped one too) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        unregister(self.pid);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads `out` line by line on a thread: each line is appended to `log`
/// and sent on the returned channel (nobody listening is fine).
fn forward_lines(out: impl std::io::Read + Send + 'static, log: PathBuf) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut file = std::fs::OpenOptions::new().append(true).open(log).ok();
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Some(file) = file.as_mut() {
                let _ = writeln!(file, "{line}");
            }
            let _ = tx.send(line);
        }
    });
    rx
}
