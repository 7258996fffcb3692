//! The report's tables for the workloads measured against another in the same rounds:
//! batches against single pairs, Connect duplicates against gRPC's.

use std::fmt::Write as _;

use super::args::{Target, Workload};
use super::report::{
    BATCH_VS_NEW_BAR, BUDGET_VS_NEW_BAR, CONNECT_VS_GRPC_BAR, Report, against_bar, table,
};

/// One side-by-side table: `measured` against `baseline`, level by level.
struct Comparison {
    title: String,
    measured: Workload,
    baseline: Workload,
    /// The measured workload's units per operation (items per batch, or 1).
    units: f64,
    /// The column heads: baseline, measured, ratio.
    heads: [&'static str; 3],
    bar: f64,
}

impl Report {
    /// Connect JSON duplicates/s against gRPC duplicates/s.
    pub(super) fn connect_text(&self, out: &mut String) {
        if !self.connect_compared {
            return;
        }
        self.side_by_side(
            out,
            &Comparison {
                title: "duplicates over Connect (JSON, HTTP/1.1) and gRPC".to_owned(),
                measured: Workload::Connect,
                baseline: Workload::Duplicate,
                units: 1.0,
                heads: [
                    "gRPC duplicates/s",
                    "Connect JSON duplicates/s",
                    "Connect ÷ gRPC (bar ≥ 0.5)",
                ],
                bar: CONNECT_VS_GRPC_BAR,
            },
        );
    }

    /// New-key pairs/s under a budget against pairs/s in a namespace without a policy.
    pub(super) fn budget_text(&self, out: &mut String) {
        if !self.budget_compared {
            return;
        }
        self.side_by_side(
            out,
            &Comparison {
                title: "new keys under a budget (the spend guard) and without a policy".to_owned(),
                measured: Workload::Budget,
                baseline: Workload::New,
                units: 1.0,
                heads: [
                    "new pairs/s, no policy",
                    "new pairs/s, budget",
                    "budget ÷ no policy (bar ≥ 0.8)",
                ],
                bar: BUDGET_VS_NEW_BAR,
            },
        );
    }

    /// Batch items/s against single Claim+Complete pairs/s.
    pub(super) fn batch_text(&self, out: &mut String) {
        let Some(items) = self.batch_items else {
            return;
        };
        self.side_by_side(
            out,
            &Comparison {
                title: format!("batches of {items} fresh keys (ClaimBatch + CompleteBatch)"),
                measured: Workload::Batch,
                baseline: Workload::New,
                units: f64::from(items),
                heads: [
                    "new pairs/s",
                    "batch items/s",
                    "items/s ÷ pairs/s (bar ≥ 4.0)",
                ],
                bar: BATCH_VS_NEW_BAR,
            },
        );
    }

    fn side_by_side(&self, out: &mut String, comparison: &Comparison) {
        let closed = |workload: Workload| {
            self.runs.iter().filter(move |run| {
                run.target == Target::Onceward && run.workload == workload && run.mode == "closed"
            })
        };
        let mut rows = vec![
            std::iter::once("conc")
                .chain(comparison.heads)
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        ];
        for measured in closed(comparison.measured) {
            let Some(baseline) =
                closed(comparison.baseline).find(|run| run.concurrency == measured.concurrency)
            else {
                continue;
            };
            let rate = measured.throughput * comparison.units;
            let ratio = (baseline.throughput > 0.0).then(|| rate / baseline.throughput);
            rows.push(vec![
                measured.concurrency.to_string(),
                format!("{:.0}", baseline.throughput),
                format!("{rate:.0}"),
                against_bar(ratio, comparison.bar),
            ]);
        }
        let _ = writeln!(out, "\n{}:", comparison.title);
        out.push_str(&table(&rows));
    }
}
