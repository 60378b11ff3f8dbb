//! The metadata Raft group under the deterministic simulator
//! (`sprawl_cluster::meta::sim`): every seed runs a group through faults
//! with invariants checked after every step.
//!
//! `cargo test` runs [`CI_SEEDS`] seeds (debug, two threads, well under
//! 20 s); `SPRAWL_SIM_SEEDS=N` runs seeds 0..N; `SPRAWL_SIM_SEED=N` replays
//! seed N alone (a failure prints its seed and this command). Numbers are
//! printed: run with `--nocapture` to see them.

mod common;

use sprawl_cluster::meta::sim::{run_seed, seeds_from_env, SimStats};

const CI_SEEDS: u64 = 200;

fn run_seeds(seeds: &[u64]) -> Result<SimStats, Vec<String>> {
    common::run_seeds(seeds, run_seed, SimStats::merge)
}

#[test]
fn sim_meta_raft_under_faults() {
    let seeds = seeds_from_env(CI_SEEDS);
    let stats = match run_seeds(&seeds) {
        Ok(stats) => stats,
        Err(failures) => panic!(
            "{} of {} seeds failed:\n{}",
            failures.len(),
            seeds.len(),
            failures.join("\n")
        ),
    };
    println!("meta sim: {stats}");
    // The runs must exercise what they claim to (a handful of seeds, as in
    // a replay, may legitimately miss some).
    if seeds.len() >= 50 {
        assert!(
            !stats.failover_ms.is_empty(),
            "no leader isolation measured"
        );
        assert!(
            stats.unsynced_records_lost > 0,
            "no crash lost unsynced writes"
        );
        assert!(stats.snapshots_restored > 0, "no snapshot was installed");
        assert!(stats.membership_changes > 0, "no learner joined");
        assert!(
            stats.acked > stats.seeds * 50,
            "too few acknowledged proposals"
        );
    }
}

#[test]
fn sim_meta_seed_replays_exactly() {
    for seed in [3, 17, 29, 40] {
        let a = run_seed(seed).unwrap();
        let b = run_seed(seed).unwrap();
        assert_eq!(a.trace, b.trace, "seed {seed} diverged on replay");
        assert_eq!(
            (a.steps, a.acked, a.elections),
            (b.steps, b.acked, b.elections)
        );
    }
    let a = run_seed(3).unwrap();
    let b = run_seed(4).unwrap();
    assert_ne!(a.trace, b.trace, "seeds 3 and 4 ran the same events");
}
