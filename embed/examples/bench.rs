//! Speed of the encoder: one query at a time on the calling thread (after warm-up), and a
//! knowledge base's questions in a batch on several threads.
//!
//! cargo run --release -p helpdesk-embed --example bench -- QUERIES.txt [THREADS] [KERNEL]
//!
//! QUERIES.txt holds one text a line (customer questions); the batch embeds 10,000 of them
//! (repeating the file as needed), as importing 1,000 articles with 10 questions each does;
//! THREADS 0 leaves the batch out.
//! KERNEL (avx512-vnni, avx-vnni, avx2, neon-dotprod, portable) runs the matrix products on
//! that kernel instead of the fastest this CPU has.

use helpdesk_embed::{model_file, Kernel, Model, Role};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let file = args
        .next()
        .ok_or("usage: bench QUERIES.txt [THREADS] [KERNEL]")?;
    let threads: usize = args.next().map(|t| t.parse()).transpose()?.unwrap_or(2);
    let kernel = args.next();
    let text = std::fs::read_to_string(&file)?;
    let queries: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if queries.is_empty() {
        return Err("no queries in the file".into());
    }

    let path = model_file().map_err(|why| format!("no model to measure: {why}"))?;
    let started = Instant::now();
    let mut model = Model::load(&path)?;
    println!("load: {:.0} ms", started.elapsed().as_secs_f64() * 1e3);
    if let Some(name) = kernel {
        let k = Kernel::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| format!("no kernel {name}"))?;
        if !model.set_kernel(k) {
            return Err(format!("this CPU cannot run {name}").into());
        }
    }
    let tokens: Vec<usize> = queries
        .iter()
        .map(|q| model.token_ids(q, Role::Query).len() + 2)
        .collect();
    let mut sorted = tokens.clone();
    sorted.sort_unstable();
    println!(
        "kernel: {}; {} queries, tokens per query (with <s> and </s>): median {}, p99 {}, max {}",
        model.kernel().name(),
        queries.len(),
        sorted[sorted.len() / 2],
        sorted[(sorted.len() - 1) * 99 / 100],
        sorted[sorted.len() - 1]
    );

    for q in queries.iter().take(50) {
        model.embed(q, Role::Query);
    }
    // Wall-clock time, and the thread's own time on a CPU, which a machine busy with other
    // work inflates far less.
    let (mut wall, mut cpu): (Vec<f64>, Vec<f64>) = queries
        .iter()
        .take(2_000)
        .map(|q| {
            let (t, c) = (Instant::now(), cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID));
            std::hint::black_box(model.embed(q, Role::Query));
            let c = (cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID) - c) as f64 / 1e6;
            (t.elapsed().as_secs_f64() * 1e3, c)
        })
        .unzip();
    for (name, times) in [("wall", &mut wall), ("cpu", &mut cpu)] {
        times.sort_by(f64::total_cmp);
        let at = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
        println!(
            "one query ({name}), {} queries on one thread: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, mean {:.2} ms",
            times.len(),
            at(0.5),
            at(0.99),
            at(1.0),
            times.iter().sum::<f64>() / times.len() as f64
        );
    }

    if threads == 0 {
        return Ok(());
    }
    let batch: Vec<&str> = queries.iter().copied().cycle().take(10_000).collect();
    let (t, c) = (Instant::now(), cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID));
    let vectors = model.embed_batch(&batch, Role::Query, threads);
    println!(
        "batch: {} questions on {threads} threads in {:.1} s wall, {:.1} s CPU (all threads)",
        vectors.len(),
        t.elapsed().as_secs_f64(),
        (cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID) - c) as f64 / 1e9
    );
    Ok(())
}

/// Nanoseconds of CPU time on `clock` (this thread's, or the process's).
fn cpu_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to; the clock ids are Linux's own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}
