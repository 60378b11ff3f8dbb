//! Deterministic simulations of SWIM membership (foca + sealed gossip).
//!
//! Every test loops over seeds (`SPRAWL_SIM_SEEDS=N` for more,
//! `SPRAWL_SIM_SEED=N` to replay one) and names the seed in every failure.
//! Times are simulated; numbers are printed (`--nocapture` shows them).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sprawl_cluster::membership::sim::{seeds_from_env, NetworkProfile, Observed, SimCluster};
use sprawl_cluster::membership::{ClusterKey, KeyId, LoadSummary, MembershipConfig};

const MS: u64 = 1000;

fn key(id: u32, fill: u8) -> ClusterKey {
    ClusterKey::new(KeyId(id), [fill; 32])
}

fn percentile(values: &mut [u64], p: f64) -> u64 {
    assert!(!values.is_empty());
    values.sort_unstable();
    let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// First time at or after `since_us` that `observer` reported `event`.
fn first_seen(
    sim: &SimCluster,
    observer: usize,
    since_us: u64,
    event: impl Fn(&Observed) -> bool,
) -> Option<u64> {
    sim.observations()
        .iter()
        .find(|o| o.observer == observer && o.at_us >= since_us && event(&o.event))
        .map(|o| o.at_us)
}

/// Declarations of a running node as down (false positives).
fn false_downs(sim: &SimCluster, killed: &[usize]) -> usize {
    sim.observations()
        .iter()
        .filter(|o| matches!(o.event, Observed::Down { node, .. } if !killed.contains(&node)))
        .count()
}

/// Node 0 starts alone; the others join through it one by one, `gap_ms`
/// apart (plus jitter), so each join is a separate membership change.
/// Returns each joiner's start time.
fn staggered_start(
    sim: &mut SimCluster,
    nodes: usize,
    gap_ms: u64,
    rng: &mut StdRng,
) -> Vec<(usize, u64)> {
    sim.start(0, &[]).unwrap();
    let mut starts = Vec::new();
    for j in 1..nodes {
        let at = sim.now() + Duration::from_millis(gap_ms + rng.random_range(0..gap_ms / 2));
        sim.run_until(at);
        starts.push((j, sim.now_us()));
        sim.start(j, &[0]).unwrap();
    }
    starts
}

/// (a) Five nodes join through one seed: everyone sees everyone, and each
/// join reaches every member within 50 ms p99.
#[test]
fn sim_five_nodes_join_through_one_seed() {
    let mut complete_us = Vec::new();
    let mut spread_us = Vec::new();
    for seed in seeds_from_env(20) {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xa11ce);
        let mut sim = SimCluster::new(
            seed,
            5,
            MembershipConfig::lan(5),
            NetworkProfile::loopback(),
            key(1, 0x5a),
        );
        let starts = staggered_start(&mut sim, 5, 300, &mut rng);
        let converged =
            sim.run_until_converged(sim.now() + Duration::from_secs(5), Duration::from_millis(1));
        assert!(converged.is_some(), "seed {seed}: 5 nodes did not converge");

        for &(j, t0) in &starts {
            let running: Vec<usize> = (0..j).collect();
            // Every member already up when j started learns j; j learns
            // every one of them.
            let mut seen_by_others = Vec::new();
            for &o in &running {
                let t = first_seen(
                    &sim,
                    o,
                    t0,
                    |e| matches!(e, Observed::Up { node, .. } if *node == j),
                )
                .unwrap_or_else(|| panic!("seed {seed}: node {o} never saw node {j} join"));
                seen_by_others.push(t);
            }
            for &o in &running {
                first_seen(
                    &sim,
                    j,
                    t0,
                    |e| matches!(e, Observed::Up { node, .. } if *node == o),
                )
                .unwrap_or_else(|| panic!("seed {seed}: joiner {j} never saw node {o}"));
            }
            let last = *seen_by_others.iter().max().unwrap();
            let first = *seen_by_others.iter().min().unwrap();
            complete_us.push(last - t0);
            spread_us.push(last - first);
        }
        assert_eq!(
            false_downs(&sim, &[]),
            0,
            "seed {seed}: a live node was declared down on a lossless network"
        );
        for i in 0..5 {
            let stats = sim.membership(i).unwrap().stats();
            assert_eq!(
                stats.rejected.total(),
                0,
                "seed {seed}: node {i} rejected datagrams: {stats:?}"
            );
            assert_eq!(stats.node_id_conflicts, 0);
        }
    }
    let n = complete_us.len();
    let (c50, c99, cmax) = (
        percentile(&mut complete_us, 0.5),
        percentile(&mut complete_us, 0.99),
        percentile(&mut complete_us, 1.0),
    );
    let (s50, s99) = (
        percentile(&mut spread_us, 0.5),
        percentile(&mut spread_us, 0.99),
    );
    println!(
        "join of a 5th member, {n} joins: join() → every member knows: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; first → last member: p50 {:.2} ms, p99 {:.2} ms",
        ms(c50), ms(c99), ms(cmax), ms(s50), ms(s99)
    );
    assert!(
        c99 < 50 * MS,
        "join propagation p99 {:.2} ms is over 50 ms",
        ms(c99)
    );
}

/// (b) A killed node is declared down by every live member in < 2 s.
#[test]
fn sim_killed_node_is_declared_down_everywhere_within_2s() {
    let mut detect_us = Vec::new();
    let mut spread_us = Vec::new();
    for seed in seeds_from_env(50) {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xdead);
        let mut sim = SimCluster::new(
            seed,
            5,
            MembershipConfig::lan(5),
            NetworkProfile::loopback(),
            key(1, 0x5a),
        );
        staggered_start(&mut sim, 5, 100, &mut rng);
        assert!(
            sim.run_until_converged(sim.now() + Duration::from_secs(5), Duration::from_millis(5))
                .is_some(),
            "seed {seed}: did not converge"
        );
        // Let probing settle into its steady rhythm, at a random phase.
        sim.run_for(Duration::from_millis(1000 + rng.random_range(0..1000)));
        let victim = rng.random_range(0..5usize);
        let t_kill = sim.now_us();
        sim.kill(victim);
        sim.run_for(Duration::from_secs(4));

        let mut seen = Vec::new();
        for o in (0..5).filter(|&o| o != victim) {
            let t = first_seen(
                &sim,
                o,
                t_kill,
                |e| matches!(e, Observed::Down { node, .. } if *node == victim),
            )
            .unwrap_or_else(|| panic!("seed {seed}: node {o} never saw killed node {victim} down"));
            seen.push(t);
        }
        let last = *seen.iter().max().unwrap();
        let first = *seen.iter().min().unwrap();
        assert!(
            last - t_kill < 2_000 * MS,
            "seed {seed}: killed node {victim} declared down everywhere after {:.1} ms",
            ms(last - t_kill)
        );
        detect_us.push(last - t_kill);
        spread_us.push(last - first);
        assert_eq!(
            false_downs(&sim, &[victim]),
            0,
            "seed {seed}: a live node was declared down"
        );
        assert!(
            sim.converged(),
            "seed {seed}: survivors disagree after the kill"
        );

        // It comes back with a new generation and is everyone's again.
        sim.start(victim, &[(victim + 1) % 5]).unwrap();
        let back =
            sim.run_until_converged(sim.now() + Duration::from_secs(3), Duration::from_millis(5));
        assert!(
            back.is_some(),
            "seed {seed}: restarted node {victim} not re-admitted"
        );
    }
    let n = detect_us.len();
    let median = percentile(&mut detect_us, 0.5);
    let p99 = percentile(&mut detect_us, 0.99);
    let max = percentile(&mut detect_us, 1.0);
    let spread99 = percentile(&mut spread_us, 0.99);
    println!(
        "kill → down at every live member, {n} seeds: median {:.0} ms, p99 {:.0} ms, max {:.0} ms; first → last member p99 {:.2} ms",
        ms(median), ms(p99), ms(max), ms(spread99)
    );
    assert!(max < 2_000 * MS);
}

/// (c1) A node holding the wrong secret (same key id) or another key id
/// never joins; every datagram it sends is rejected and counted.
#[test]
fn sim_wrong_cluster_key_never_joins_and_is_counted() {
    for seed in seeds_from_env(5) {
        for (label, intruder_key) in [
            ("wrong secret", key(1, 0x66)),
            ("unknown key id", key(7, 0x5a)),
        ] {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut sim = SimCluster::new(
                seed,
                6,
                MembershipConfig::lan(5),
                NetworkProfile::loopback(),
                key(1, 0x5a),
            );
            sim.set_key(5, intruder_key);
            staggered_start(&mut sim, 5, 100, &mut rng);
            sim.start(5, &[0, 1]).unwrap();
            sim.run_for(Duration::from_secs(10));

            for o in 0..5 {
                assert!(
                    !sim.observations()
                        .iter()
                        .any(|ob| ob.observer == o
                            && matches!(ob.event, Observed::Up { node: 5, .. })),
                    "seed {seed} ({label}): node {o} admitted the intruder"
                );
                assert!(!sim.view_of(o).contains(&5));
            }
            let intruder = sim.membership(5).unwrap();
            assert!(
                !intruder.is_joined(),
                "seed {seed} ({label}): intruder joined"
            );
            assert_eq!(intruder.member_count(), 0);
            let announces = intruder.stats().join_announces;
            assert!(
                announces >= 2 * 4,
                "seed {seed}: join was not retried ({announces} announces)"
            );

            let rejected: Vec<_> = (0..2)
                .map(|s| sim.membership(s).unwrap().stats().rejected)
                .collect();
            let (auth, unknown): (u64, u64) = rejected
                .iter()
                .fold((0, 0), |(a, u), r| (a + r.auth_failed, u + r.unknown_key));
            // Both seeds got every announce (lossless network), none opened.
            match label {
                "wrong secret" => assert_eq!((auth, unknown), (announces, 0), "seed {seed}"),
                _ => assert_eq!((auth, unknown), (0, announces), "seed {seed}"),
            }
            for o in 0..5 {
                let expected: Vec<usize> = (0..5).filter(|&x| x != o).collect();
                assert_eq!(
                    sim.view_of(o),
                    expected,
                    "seed {seed} ({label}): node {o}'s view"
                );
            }
            assert_eq!(false_downs(&sim, &[]), 0);
        }
    }
}

/// (c2) Rotating the cluster key across a live cluster (add everywhere,
/// promote everywhere, retire the old one everywhere, each step node by
/// node) loses no member and rejects nothing.
#[test]
fn sim_key_rotation_across_a_live_cluster_loses_no_member() {
    for seed in seeds_from_env(8) {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xc0ffee);
        let mut sim = SimCluster::new(
            seed,
            5,
            MembershipConfig::lan(5),
            NetworkProfile::loopback(),
            key(1, 0x5a),
        );
        staggered_start(&mut sim, 5, 100, &mut rng);
        assert!(sim
            .run_until_converged(Duration::from_secs(5), Duration::from_millis(5))
            .is_some());
        sim.run_for(Duration::from_secs(1));
        let t_rotation = sim.now_us();

        let new_key = key(2, 0xa5);
        for step in ["add", "promote", "retire"] {
            let mut order: Vec<usize> = (0..5).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, rng.random_range(0..=i));
            }
            for node in order {
                let k = new_key.clone();
                sim.with_membership(node, |m, _| {
                    let ring = m.keyring_mut();
                    match step {
                        "add" => ring.add(k),
                        "promote" => ring.promote(KeyId(2)),
                        _ => ring.retire(KeyId(1)),
                    }
                })
                .unwrap()
                .unwrap_or_else(|e| panic!("seed {seed}: {step} on node {node}: {e}"));
                sim.run_for(Duration::from_millis(rng.random_range(50..400)));
            }
            sim.run_for(Duration::from_secs(1));
        }
        sim.run_for(Duration::from_secs(2));

        assert!(
            !sim.observations().iter().any(|o| o.at_us >= t_rotation
                && matches!(o.event, Observed::Down { .. } | Observed::Isolated)),
            "seed {seed}: a member was lost during the rotation"
        );
        assert!(sim.converged(), "seed {seed}: not converged after rotation");
        for i in 0..5 {
            let m = sim.membership(i).unwrap();
            assert_eq!(m.keyring().key_ids(), vec![KeyId(2)]);
            assert_eq!(m.keyring().primary(), KeyId(2));
            let r = m.stats().rejected;
            assert_eq!(
                (r.auth_failed, r.unknown_key),
                (0, 0),
                "seed {seed}: node {i} rejected datagrams during rotation"
            );
        }
        // Gossip still flows under the new key: load summaries, published
        // once a second like a node does, reach everyone.
        let t_load = sim.now_us();
        for _ in 0..3 {
            sim.with_membership(3, |m, now| {
                let load = LoadSummary {
                    partitions_led: 9,
                    ..LoadSummary::default()
                };
                m.set_load(load, now)
            })
            .unwrap()
            .unwrap();
            sim.run_for(Duration::from_secs(1));
        }
        let node_id = sim.nodes()[3].node_id();
        for o in (0..5).filter(|&o| o != 3) {
            assert!(
                first_seen(&sim, o, t_load, |e| *e == Observed::Load { node: 3 }).is_some(),
                "seed {seed}: node {o} got no load summary under the new key"
            );
            let load = sim.membership(o).unwrap().peer_load(node_id).unwrap();
            assert_eq!(load.load.partitions_led, 9, "seed {seed}: node {o}");
        }
    }
}

/// (d) With 20 % of datagrams lost (plus duplicates and reordering) the
/// cluster still converges and stays converged.
#[test]
fn sim_twenty_percent_loss_still_converges() {
    let mut converge_us = Vec::new();
    let mut false_down_total = 0;
    for seed in seeds_from_env(10) {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x1055);
        let mut sim = SimCluster::new(
            seed,
            5,
            MembershipConfig::lan(5),
            NetworkProfile::faulty(0.20),
            key(1, 0x5a),
        );
        let starts = staggered_start(&mut sim, 5, 100, &mut rng);
        let t_last_start = starts.last().unwrap().1;
        let at = sim.run_until_converged(Duration::from_secs(30), Duration::from_millis(5));
        let at = at.unwrap_or_else(|| {
            let views: Vec<_> = (0..5).map(|i| sim.view_of(i)).collect();
            panic!("seed {seed}: no convergence in 30 s at 20% loss; views {views:?}")
        });
        converge_us.push(at.as_micros() as u64 - t_last_start);
        // Keep running: false suspicions may happen at this loss rate, but
        // renewals bring members back; the end state is whole.
        sim.run_for(Duration::from_secs(20));
        let healed = sim.run_until_converged(
            sim.now() + Duration::from_secs(10),
            Duration::from_millis(5),
        );
        assert!(healed.is_some(), "seed {seed}: diverged under loss");
        false_down_total += false_downs(&sim, &[]);
        let net = sim.net_stats();
        assert!(
            net.dropped > net.sent / 10,
            "seed {seed}: the network did not drop ({net:?})"
        );
        let replays: u64 = (0..5)
            .map(|i| sim.membership(i).unwrap().stats().rejected.replayed)
            .sum();
        assert!(
            replays > 0 || net.duplicated == 0,
            "seed {seed}: duplicates were not caught as replays"
        );
    }
    let n = converge_us.len();
    let median = percentile(&mut converge_us, 0.5);
    let max = percentile(&mut converge_us, 1.0);
    println!(
        "20% loss, {n} seeds: last join → converged median {:.0} ms, max {:.0} ms; false downs (all recovered): {false_down_total}",
        ms(median), ms(max)
    );
}

/// A partition long enough for each side to declare the other down heals
/// by itself: members announce to down members, the buried side renews its
/// identity, and everyone converges.
#[test]
fn sim_partition_heals_by_itself() {
    for seed in seeds_from_env(5) {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x9a27);
        let mut sim = SimCluster::new(
            seed,
            5,
            MembershipConfig::lan(5),
            NetworkProfile::loopback(),
            key(1, 0x5a),
        );
        staggered_start(&mut sim, 5, 100, &mut rng);
        assert!(sim
            .run_until_converged(Duration::from_secs(5), Duration::from_millis(5))
            .is_some());
        sim.partition(&[&[0, 1, 2], &[3, 4]]);
        sim.run_for(Duration::from_secs(5));
        for a in [0, 1, 2] {
            let view = sim.view_of(a);
            assert!(
                !view.contains(&3) && !view.contains(&4),
                "seed {seed}: node {a} still sees the other side: {view:?}"
            );
        }
        sim.heal();
        let t_heal = sim.now_us();
        let healed = sim.run_until_converged(
            sim.now() + Duration::from_secs(15),
            Duration::from_millis(5),
        );
        let healed =
            healed.unwrap_or_else(|| panic!("seed {seed}: partition did not heal in 15 s"));
        println!(
            "seed {seed}: healed {:.0} ms after the partition ended",
            ms(healed.as_micros() as u64 - t_heal)
        );
    }
}

/// A member cut off alone finds itself isolated, keeps announcing to its
/// seeds, and once the network returns renews its buried identity and is
/// everyone's again.
#[test]
fn sim_isolated_member_rejoins_through_its_seeds() {
    for seed in seeds_from_env(5) {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x150);
        let mut sim = SimCluster::new(
            seed,
            5,
            MembershipConfig::lan(5),
            NetworkProfile::loopback(),
            key(1, 0x5a),
        );
        staggered_start(&mut sim, 5, 100, &mut rng);
        assert!(sim
            .run_until_converged(Duration::from_secs(5), Duration::from_millis(5))
            .is_some());
        let t_cut = sim.now_us();
        sim.partition(&[&[4]]);
        sim.run_for(Duration::from_secs(4));
        assert!(
            first_seen(&sim, 4, t_cut, |e| *e == Observed::Isolated).is_some(),
            "seed {seed}: node 4 did not notice it was alone"
        );
        let announces = sim.membership(4).unwrap().stats().join_announces;
        sim.run_for(Duration::from_secs(2));
        assert!(
            sim.membership(4).unwrap().stats().join_announces > announces,
            "seed {seed}: the isolated node stopped announcing to its seed"
        );
        sim.heal();
        let t_heal = sim.now_us();
        let back =
            sim.run_until_converged(sim.now() + Duration::from_secs(8), Duration::from_millis(5));
        assert!(back.is_some(), "seed {seed}: isolated node not re-admitted");
        assert!(
            first_seen(&sim, 4, t_cut, |e| matches!(
                e,
                Observed::Rejoined { generation: 2 }
            ))
            .is_some(),
            "seed {seed}: node 4 came back without renewing its buried identity"
        );
        println!(
            "seed {seed}: re-admitted {:.0} ms after the network returned",
            ms(sim.now_us() - t_heal)
        );
    }
}

/// A graceful leave is seen everywhere at once (no suspicion timeout), and
/// the leaver ignores the cluster afterwards.
#[test]
fn sim_graceful_leave_is_seen_fast() {
    for seed in seeds_from_env(5) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut sim = SimCluster::new(
            seed,
            5,
            MembershipConfig::lan(5),
            NetworkProfile::loopback(),
            key(1, 0x5a),
        );
        staggered_start(&mut sim, 5, 100, &mut rng);
        assert!(sim
            .run_until_converged(Duration::from_secs(5), Duration::from_millis(5))
            .is_some());
        let t = sim.now_us();
        sim.leave(2).unwrap();
        sim.run_for(Duration::from_millis(300));
        for o in [0, 1, 3, 4] {
            let at = first_seen(&sim, o, t, |e| matches!(e, Observed::Down { node: 2, .. }))
                .unwrap_or_else(|| panic!("seed {seed}: node {o} missed the leave"));
            assert!(
                at - t < 100 * MS,
                "seed {seed}: leave took {:.1} ms to reach node {o}",
                ms(at - t)
            );
        }
        assert!(sim.membership(2).unwrap().has_left());
        assert!(sim.converged());
    }
}

/// Load summaries reach every member, newest wins, and a restarted node's
/// first summary beats its previous life's.
#[test]
fn sim_load_summaries_spread_and_newest_wins() {
    // Like a node: a burst of updates, then the current summary again once
    // a second. Gossip may miss a member with one summary (each is sent
    // `max_transmissions` times per holder, ~1 % miss per member on 5
    // nodes), so the periodic republication is what makes it reliable.
    let publish = |sim: &mut SimCluster, node: usize, msgs: u64| {
        sim.with_membership(node, |m, now| {
            let load = LoadSummary {
                messages_in_per_sec: msgs,
                cpu_busy_permille: 500,
                ..LoadSummary::default()
            };
            m.set_load(load, now)
        })
        .unwrap()
        .unwrap();
    };
    for seed in seeds_from_env(5) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut sim = SimCluster::new(
            seed,
            5,
            MembershipConfig::lan(5),
            NetworkProfile::loopback(),
            key(1, 0x5a),
        );
        staggered_start(&mut sim, 5, 100, &mut rng);
        assert!(sim
            .run_until_converged(Duration::from_secs(5), Duration::from_millis(5))
            .is_some());
        let node_id = sim.nodes()[1].node_id();
        for msgs in [100, 200, 300] {
            publish(&mut sim, 1, msgs);
            sim.run_for(Duration::from_millis(20));
        }
        for _ in 0..3 {
            sim.run_for(Duration::from_secs(1));
            publish(&mut sim, 1, 300);
        }
        sim.run_for(Duration::from_millis(500));
        for o in [0, 2, 3, 4] {
            let load = sim
                .membership(o)
                .unwrap()
                .peer_load(node_id)
                .unwrap_or_else(|| panic!("seed {seed}: node {o} has no load of node 1"));
            assert_eq!(
                (load.load.messages_in_per_sec, load.version.generation),
                (300, 1),
                "seed {seed}: node {o} holds a stale load"
            );
            assert!(
                load.version.sequence >= 3,
                "seed {seed}: node {o}: {load:?}"
            );
        }
        // A restarted node starts counting again, one generation up: its
        // first summary must beat everything of its previous life.
        sim.kill(1);
        sim.start(1, &[0]).unwrap();
        sim.run_for(Duration::from_millis(500));
        for _ in 0..3 {
            publish(&mut sim, 1, 7);
            sim.run_for(Duration::from_secs(1));
        }
        for o in [0, 2, 3, 4] {
            let load = sim.membership(o).unwrap().peer_load(node_id).unwrap();
            assert_eq!(
                (load.load.messages_in_per_sec, load.version.generation),
                (7, 2),
                "seed {seed}: node {o} kept the previous life's load"
            );
        }
    }
}

/// The same seed gives the same run, bit for bit; another seed does not.
#[test]
fn sim_runs_are_deterministic_per_seed() {
    let run = |seed: u64| {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut sim = SimCluster::new(
            seed,
            5,
            MembershipConfig::lan(5),
            NetworkProfile::faulty(0.1),
            key(1, 0x5a),
        );
        staggered_start(&mut sim, 5, 100, &mut rng);
        sim.run_for(Duration::from_secs(3));
        sim.kill(2);
        sim.run_for(Duration::from_secs(3));
        (sim.observations().to_vec(), sim.net_stats())
    };
    let a = run(42);
    assert_eq!(a, run(42));
    assert_ne!(a.0, run(43).0);
}

/// 1,000 members (run by scripts/sim.sh): simulated time and gossip rounds
/// until every member sees every other, datagrams per member per second
/// while converging and at rest, and failure detection across the cluster.
#[test]
#[ignore = "1,000 members: minutes in debug; run by scripts/sim.sh in release"]
fn sim_thousand_nodes_converge() {
    // SPRAWL_SIM_LARGE_NODES changes the size (e.g. to find where a
    // behaviour starts).
    let n: usize = std::env::var("SPRAWL_SIM_LARGE_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let seeds = match std::env::var("SPRAWL_SIM_SEED") {
        Ok(_) => seeds_from_env(1),
        Err(_) => vec![0],
    };
    let bytes_sent = |sim: &SimCluster| -> u64 {
        (0..sim.nodes().len())
            .filter_map(|i| sim.membership(i))
            .map(|m| m.stats().bytes_sent)
            .sum()
    };
    for seed in seeds {
        let config = MembershipConfig::lan(n as u32);
        let gossip_ms = config.gossip_interval_ms;
        let mut rng = StdRng::seed_from_u64(seed);
        // Node `n` is kept back to measure one join into the full cluster.
        let mut sim = SimCluster::new(
            seed,
            n + 1,
            config,
            NetworkProfile::loopback(),
            key(1, 0x5a),
        );
        sim.record_loads(false);
        sim.start(0, &[]).unwrap();
        // Everyone joins through 3 seeds within 5 s.
        let mut order: Vec<(u64, usize)> =
            (1..n).map(|j| (rng.random_range(0..5_000u64), j)).collect();
        order.sort_unstable();
        for (at_ms, j) in order {
            sim.run_until(Duration::from_millis(at_ms));
            let seeds: Vec<usize> = [0, 1, 2].into_iter().filter(|&s| s != j).collect();
            sim.start(j, &seeds).unwrap();
        }
        let t_all_started = sim.now();
        let deadline = Duration::from_secs(300);
        let converged = loop {
            let chunk_end = (sim.now() + Duration::from_secs(5)).min(deadline);
            if let Some(at) = sim.run_until_converged(chunk_end, Duration::from_millis(10)) {
                break at;
            }
            let mut sizes: Vec<u64> = (0..n).map(|i| sim.view_len(i) as u64).collect();
            let complete = sizes.iter().filter(|&&s| s as usize == n - 1).count();
            println!(
                "seed {seed}: t={:.0} s: views min {} p50 {} max {}; {complete} of {n} complete; false downs {}; {:?}",
                sim.now().as_secs_f64(),
                percentile(&mut sizes, 0.0),
                percentile(&mut sizes, 0.5),
                percentile(&mut sizes, 1.0),
                false_downs(&sim, &[]),
                sim.net_stats(),
            );
            assert!(
                sim.now() < deadline,
                "seed {seed}: {n} nodes did not converge in 300 s"
            );
        };
        let joining_rate = sim.net_stats().sent as f64 / n as f64 / converged.as_secs_f64();
        println!(
            "seed {seed}: {n} members joining over 5 s: every member saw every other {:.0} ms after the last start ({:.2} s after the first); {joining_rate:.1} datagrams/member/s meanwhile",
            (converged - t_all_started).as_secs_f64() * 1000.0,
            converged.as_secs_f64(),
        );

        let (sent_before, bytes_before) = (sim.net_stats().sent, bytes_sent(&sim));
        sim.run_for(Duration::from_secs(10));
        let rest = (sim.net_stats().sent - sent_before) as f64 / n as f64 / 10.0;
        let rest_bytes = (bytes_sent(&sim) - bytes_before) as f64 / n as f64 / 10.0;
        println!(
            "seed {seed}: at rest: {rest:.1} datagrams/member/s, {rest_bytes:.0} bytes/member/s"
        );
        assert!(sim.converged(), "seed {seed}: diverged at rest");
        assert_eq!(
            false_downs(&sim, &[]),
            0,
            "seed {seed}: false downs at rest"
        );

        // One more member joins the settled cluster.
        let t_join = sim.now_us();
        let (sent_before, bytes_before) = (sim.net_stats().sent, bytes_sent(&sim));
        sim.start(n, &[0]).unwrap();
        let joined = sim.run_until_converged(
            sim.now() + Duration::from_secs(30),
            Duration::from_millis(1),
        );
        let joined =
            joined.unwrap_or_else(|| panic!("seed {seed}: member {n} not known to all in 30 s"));
        let mut known_at = vec![None; n];
        for o in sim.observations().iter().filter(|o| o.at_us >= t_join) {
            if matches!(o.event, Observed::Up { node, .. } if node == n) && o.observer < n {
                known_at[o.observer].get_or_insert(o.at_us - t_join);
            }
        }
        let mut known_at: Vec<u64> = known_at
            .into_iter()
            .map(|t| t.expect("converged means everyone saw it"))
            .collect();
        let join_us = joined.as_micros() as u64 - t_join;
        println!(
            "seed {seed}: a member joining {n}: known by all {:.1} ms after join() (p50 member {:.1} ms, i.e. {:.2} gossip intervals to all), full view {:.1} ms; {:.1} datagrams and {:.0} bytes per member for it",
            ms(percentile(&mut known_at, 1.0)),
            ms(percentile(&mut known_at, 0.5)),
            ms(percentile(&mut known_at, 1.0)) / gossip_ms as f64,
            ms(join_us),
            (sim.net_stats().sent - sent_before) as f64 / n as f64,
            (bytes_sent(&sim) - bytes_before) as f64 / n as f64,
        );

        let victim = rng.random_range(0..n);
        let t_kill = sim.now_us();
        sim.kill(victim);
        sim.run_for(Duration::from_secs(10));
        // One pass over the log (it holds a million entries by now).
        let mut down_at = vec![None; n + 1];
        for o in sim.observations().iter().filter(|o| o.at_us >= t_kill) {
            if matches!(o.event, Observed::Down { node, .. } if node == victim) {
                down_at[o.observer].get_or_insert(o.at_us - t_kill);
            }
        }
        let mut last = 0;
        for (o, at) in down_at.iter().enumerate().filter(|&(o, _)| o != victim) {
            let at =
                at.unwrap_or_else(|| panic!("seed {seed}: node {o} never saw node {victim} down"));
            last = last.max(at);
        }
        println!(
            "seed {seed}: a killed member was down at all {n} others after {:.0} ms (suspicion {} ms at this size)",
            ms(last),
            sim.membership(0).unwrap().config().suspect_to_down_ms,
        );
        assert_eq!(false_downs(&sim, &[victim]), 0, "seed {seed}: false downs");
    }
}
