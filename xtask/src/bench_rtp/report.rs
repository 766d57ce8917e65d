//! The bench's report: per-round figures, medians, ratios against the targets, and the
//! `scan custom` throughput.

use super::sensor::{RtpCounters, ScanReport};
use super::{Passes, RoundResult, RtpArgs, TARGET_CACHED, TARGET_COLD, TARGET_VS_CLAMONACC};
use crate::banner;
use crate::bench::{median, or_na, verdict};

pub(super) fn report(
    args: &RtpArgs,
    rounds: &[RoundResult],
    clamav_note: Option<&str>,
    scan: &Result<ScanReport, String>,
) {
    banner("bench rtp: results");
    println!(
        "{} files of 1-4 KB on a fresh tmpfs per run, opened and read twice; times in ms",
        args.files
    );
    let ms = |p: Option<Passes>| {
        or_na(p, |p| {
            format!("{:.1} / {:.1}", p.cold * 1e3, p.cached * 1e3)
        })
    };
    println!(
        "{:>5}  {:>17}  {:>17}  {:>13}  {:>21}  daemon counters during the workload",
        "round", "baseline p1 / p2", "sensor p1 / p2", "ratio p1/p2", "clamonacc p1 / p2",
    );
    for (i, r) in rounds.iter().enumerate() {
        let sensor = r.sensor.as_ref().map(|s| s.passes);
        let ratio = or_na(sensor, |s| {
            format!(
                "{:.3}/{:.3}",
                s.cold / r.baseline.cold,
                s.cached / r.baseline.cached
            )
        });
        println!(
            "{:>5}  {:>17}  {:>17}  {:>13}  {:>21}  {}",
            i + 1,
            ms(Some(r.baseline)),
            ms(sensor),
            ratio,
            ms(r.clamonacc),
            or_na(r.sensor.as_ref().map(|s| s.counters), |c| c.to_string())
        );
    }

    let med = |mut v: Vec<f64>| (!v.is_empty()).then(|| median(&mut v));
    let baseline = medians(rounds.iter().map(|r| r.baseline));
    let sensor = medians(
        rounds
            .iter()
            .filter_map(|r| r.sensor.as_ref().map(|s| s.passes)),
    );
    let clamonacc = medians(rounds.iter().filter_map(|r| r.clamonacc));
    let per_file = |p: Option<Passes>| {
        or_na(p, |p| {
            let n = f64::from(args.files);
            format!(
                "pass 1 {:.1} ms ({:.2} us/file), pass 2 {:.1} ms ({:.2} us/file)",
                p.cold * 1e3,
                p.cold * 1e6 / n,
                p.cached * 1e3,
                p.cached * 1e6 / n
            )
        })
    };
    println!("median baseline:  {}", per_file(baseline));
    println!("median sensor:    {}", per_file(sensor));
    match (clamonacc, clamav_note) {
        (None, note) => println!("median clamonacc: n/a ({})", note.unwrap_or("no rounds")),
        (Some(c), note) => {
            println!("median clamonacc: {}", per_file(Some(c)));
            if let Some(note) = note {
                println!("  note: clamonacc {note}");
            }
        }
    }

    // Baseline and sensor runs alternate, so their ratio is taken per round
    // (drift hits both alike); clamonacc's is a ratio of medians.
    let paired = |f: fn(&Passes) -> f64| {
        med(rounds
            .iter()
            .filter_map(|r| r.sensor.as_ref().map(|s| f(&s.passes) / f(&r.baseline)))
            .collect())
    };
    let cold = paired(|p| p.cold);
    let cached = paired(|p| p.cached);
    let over = |a: Option<Passes>, b: Option<Passes>, f: fn(&Passes) -> f64| {
        a.zip(b).map(|(a, b)| f(&a) / f(&b))
    };
    let vs_cold = over(sensor, clamonacc, |p| p.cold);
    let vs_cached = over(sensor, clamonacc, |p| p.cached);
    let x = |v: Option<f64>| or_na(v, |v| format!("{v:.3}"));
    println!(
        "sensor / baseline (median of per-round ratios): pass 1 {}, pass 2 {}",
        x(cold),
        x(cached)
    );
    println!(
        "sensor / clamonacc (ratio of medians):          pass 1 {}, pass 2 {}",
        or_na(vs_cold, |v| format!("{v:.4}")),
        or_na(vs_cached, |v| format!("{v:.4}"))
    );
    println!(
        "clamonacc / baseline (for reference):           pass 1 {}, pass 2 {}",
        or_na(over(clamonacc, baseline, |p| p.cold), |v| format!(
            "{v:.1}x"
        )),
        or_na(over(clamonacc, baseline, |p| p.cached), |v| format!(
            "{v:.1}x"
        ))
    );

    let counters: Vec<RtpCounters> = rounds
        .iter()
        .filter_map(|r| r.sensor.as_ref().map(|s| s.counters))
        .collect();
    let field_median = |f: fn(&RtpCounters) -> Option<u64>| {
        counters
            .iter()
            .map(f)
            .collect::<Option<Vec<u64>>>()
            .filter(|v| !v.is_empty())
            .map(|v| median(&mut v.into_iter().map(|n| n as f64).collect::<Vec<_>>()))
    };
    let n = |v: Option<f64>| or_na(v, |v| format!("{v:.0}"));
    println!(
        "daemon during the workload (median per run, {} opens): events {}, scanned {}, \
         unmatchable {}, cache hits {}, deadline-allowed {}, denied {}",
        2 * u64::from(args.files),
        n(field_median(|c| c.events)),
        n(field_median(|c| c.scanned)),
        n(field_median(|c| c.unmatchable)),
        n(field_median(|c| c.cache_hits)),
        n(field_median(|c| c.deadline_allowed)),
        n(field_median(|c| c.denied))
    );

    match scan {
        Err(reason) => println!("scan custom: n/a ({reason})"),
        Ok(report) => {
            let mb = report.written.bytes as f64 / 1e6;
            println!(
                "scan custom: a tree of {} files, {mb:.1} MB on disk (binaries, text, random data, \
                 1 EICAR file)",
                report.written.files
            );
            for (label, run) in &report.runs {
                let sum = &run.summary;
                let mbps = sum
                    .bytes
                    .zip(sum.duration_secs)
                    .filter(|(_, d)| *d > 0.0)
                    .map(|(b, d)| b as f64 / 1e6 / d);
                println!("  {label}:");
                println!(
                    "    summary: files {}, bytes {}, threats {} (1 expected), errors {}, \
                     duration {} s",
                    or_na(sum.files, |v| v.to_string()),
                    or_na(sum.bytes, |v| v.to_string()),
                    or_na(sum.threats, |v| v.to_string()),
                    or_na(sum.errors, |v| v.to_string()),
                    or_na(sum.duration_secs, |v| format!("{v:.3}"))
                );
                println!(
                    "    throughput: {} MB/s from the summary (bytes / duration_secs), \
                     {:.1} MB/s by wall clock ({mb:.1} MB written / {:.3} s of the client)",
                    or_na(mbps, |v| format!("{v:.1}")),
                    mb / run.wall_secs,
                    run.wall_secs
                );
                if run.wall_secs < 1.0 {
                    println!(
                        "    (under a second: fixed costs and polling weigh in; \
                         a larger --scan-mb gives a steadier figure)"
                    );
                }
            }
        }
    }

    println!(
        "targets: sensor / baseline pass 1 <= {TARGET_COLD}, pass 2 <= {TARGET_CACHED}; \
         sensor / clamonacc well under 1 (<= {TARGET_VS_CLAMONACC})"
    );
    let check = |name: &str, v: Option<f64>, target: f64| {
        println!(
            "  {name} {}: {}",
            or_na(v, |v| format!("{v:.4}")),
            verdict(v.map(|v| v <= target))
        );
    };
    check("sensor / baseline, pass 1", cold, TARGET_COLD);
    check("sensor / baseline, pass 2", cached, TARGET_CACHED);
    check("sensor / clamonacc, pass 1", vs_cold, TARGET_VS_CLAMONACC);
    check("sensor / clamonacc, pass 2", vs_cached, TARGET_VS_CLAMONACC);
}

/// Median of each pass over runs, or None without runs.
fn medians(runs: impl Iterator<Item = Passes>) -> Option<Passes> {
    let (mut cold, mut cached): (Vec<f64>, Vec<f64>) = runs.map(|p| (p.cold, p.cached)).unzip();
    (!cold.is_empty()).then(|| Passes {
        cold: median(&mut cold),
        cached: median(&mut cached),
    })
}
