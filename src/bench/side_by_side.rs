//! The report's tables for the workloads measured against another in the same rounds:
//! batches against single pairs, Connect duplicates against gRPC's.

use std::fmt::Write as _;

use super::args::{Target, Workload};
use super::report::{BATCH_VS_NEW_BAR, CONNECT_VS_GRPC_BAR, Report, against_bar, table};

impl Report {
    /// Connect JSON duplicates/s against gRPC duplicates/s, level by level.
    pub(super) fn connect_text(&self, out: &mut String) {
        if !self.connect_compared {
            return;
        }
        let closed = |workload: Workload, concurrency: u32| {
            self.runs.iter().find(|run| {
                run.target == Target::Onceward
                    && run.workload == workload
                    && run.concurrency == concurrency
                    && run.mode == "closed"
            })
        };
        let mut rows = vec![
            [
                "conc",
                "gRPC duplicates/s",
                "Connect JSON duplicates/s",
                "Connect ÷ gRPC (bar ≥ 0.5)",
            ]
            .map(str::to_owned)
            .to_vec(),
        ];
        for connect in self
            .runs
            .iter()
            .filter(|run| run.workload == Workload::Connect && run.mode == "closed")
        {
            let Some(grpc) = closed(Workload::Duplicate, connect.concurrency) else {
                continue;
            };
            let ratio = (grpc.throughput > 0.0).then(|| connect.throughput / grpc.throughput);
            rows.push(vec![
                connect.concurrency.to_string(),
                format!("{:.0}", grpc.throughput),
                format!("{:.0}", connect.throughput),
                against_bar(ratio, CONNECT_VS_GRPC_BAR),
            ]);
        }
        let _ = writeln!(out, "\nduplicates over Connect (JSON, HTTP/1.1) and gRPC:");
        out.push_str(&table(&rows));
    }

    /// Batch items/s against single Claim+Complete pairs/s, level by level.
    pub(super) fn batch_text(&self, out: &mut String) {
        let Some(items) = self.batch_items else {
            return;
        };
        let closed = |workload: Workload, concurrency: u32| {
            self.runs.iter().find(|run| {
                run.target == Target::Onceward
                    && run.workload == workload
                    && run.concurrency == concurrency
                    && run.mode == "closed"
            })
        };
        let mut rows = vec![
            [
                "conc",
                "new pairs/s",
                "batch items/s",
                "items/s ÷ pairs/s (bar ≥ 4.0)",
            ]
            .map(str::to_owned)
            .to_vec(),
        ];
        for batch in self
            .runs
            .iter()
            .filter(|run| run.workload == Workload::Batch && run.mode == "closed")
        {
            let Some(new) = closed(Workload::New, batch.concurrency) else {
                continue;
            };
            let items_per_s = batch.throughput * f64::from(items);
            let ratio = (new.throughput > 0.0).then(|| items_per_s / new.throughput);
            rows.push(vec![
                batch.concurrency.to_string(),
                format!("{:.0}", new.throughput),
                format!("{items_per_s:.0}"),
                against_bar(ratio, BATCH_VS_NEW_BAR),
            ]);
        }
        let _ = writeln!(
            out,
            "
batches of {items} fresh keys (ClaimBatch + CompleteBatch):"
        );
        out.push_str(&table(&rows));
    }
}
