//! User-traffic cost of the filter: HTTPS keep-alive load against two Envoys
//! that differ only in the filter (on its status listener), alternating
//! rounds so both see the same machine noise.

use anyhow::{bail, Context, Result};
use certsync_testkit::tls_client;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Throughput and latency of one round.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    pub requests_per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// Drives `connections` keep-alive HTTPS connections for `duration`.
pub fn drive(port: u16, sni: &str, connections: usize, duration: Duration) -> Result<Round> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..connections {
        let (_, mut stream) = tls_client::connect(port, sni)?;
        let stop = Arc::clone(&stop);
        let request = format!("GET / HTTP/1.1\r\nhost: {sni}\r\n\r\n").into_bytes();
        workers.push(thread::spawn(move || -> Result<Vec<u32>> {
            let mut latencies = Vec::with_capacity(64 * 1024);
            let mut buf = vec![0u8; 16 * 1024];
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                stream.write_all(&request)?;
                read_one_response(&mut stream, &mut buf)?;
                latencies.push(start.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
            }
            Ok(latencies)
        }));
    }
    let started = Instant::now();
    thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for w in workers {
        match w.join() {
            Ok(Ok(l)) => all.extend(l),
            Ok(Err(e)) => return Err(e),
            Err(_) => bail!("load worker panicked"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    if all.is_empty() {
        bail!("no request completed");
    }
    all.sort_unstable();
    let pct = |p: f64| u64::from(all[((all.len() - 1) as f64 * p) as usize]);
    Ok(Round {
        requests_per_sec: all.len() as f64 / elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    })
}

/// Reads exactly one HTTP/1.1 response with a Content-Length body.
fn read_one_response(stream: &mut impl Read, buf: &mut [u8]) -> Result<()> {
    let mut filled = 0;
    loop {
        let n = stream
            .read(&mut buf[filled..])
            .context("reading response")?;
        if n == 0 {
            bail!("connection closed mid-response");
        }
        filled += n;
        let Some(head_end) = find(&buf[..filled], b"\r\n\r\n") else {
            if filled == buf.len() {
                bail!("response head too large");
            }
            continue;
        };
        let head = std::str::from_utf8(&buf[..head_end]).context("response head")?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .context("response without content-length")?;
        let total = head_end + 4 + length;
        while filled < total {
            let n = stream.read(&mut buf[filled..total])?;
            if n == 0 {
                bail!("connection closed mid-body");
            }
            filled += n;
        }
        return Ok(());
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
