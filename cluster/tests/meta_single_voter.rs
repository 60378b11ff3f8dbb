//! A metadata group founded by one node grows by membership changes: the
//! way a node started with `--bootstrap` admits the others.

use sprawl_cluster::meta::{
    MemMetaStorage, MembershipChange, MetaCommand, MetaConfig, MetaNode, TopicConfig,
};

/// Drives the node until it has nothing left: a write waits for `sync`
/// even when `poll_ready` has nothing more to hand out.
fn pump(node: &mut MetaNode<MemMetaStorage>) -> usize {
    let mut messages = 0;
    loop {
        while let Some(ready) = node.poll_ready().unwrap() {
            messages += ready.messages.len();
        }
        if !node.needs_sync() {
            return messages;
        }
        node.sync().unwrap();
    }
}

#[test]
fn a_single_founder_commits_alone_and_admits_a_learner() {
    let mut node = MetaNode::bootstrap(MetaConfig::new(1, 7), MemMetaStorage::new(), &[1]).unwrap();
    for _ in 0..40 {
        node.tick();
        pump(&mut node);
    }
    assert!(node.is_leader(), "a lone voter elects itself");
    let applied_before = node.applied_index();
    node.propose(MetaCommand::CreateTopic {
        name: "t".into(),
        config: TopicConfig {
            partitions: 1,
            replication_factor: 1,
            retention_bytes: None,
            retention_ms: None,
            created_ms: 0,
        },
        replicas: vec![vec![1]],
    })
    .unwrap();
    pump(&mut node);
    assert!(
        node.state().topic("t").is_some(),
        "a lone voter commits alone"
    );
    assert!(node.applied_index() > applied_before);

    node.propose(MetaCommand::ChangeMembership(MembershipChange::AddLearner(
        2,
    )))
    .unwrap();
    let messages = pump(&mut node);
    assert!(
        node.state().members().learners.contains(&2),
        "learner added: {:?}",
        node.state().members()
    );
    // The new learner is sent the log (a snapshot or appends) at once or
    // within a heartbeat.
    let mut sent = messages;
    for _ in 0..5 {
        node.tick();
        sent += pump(&mut node);
    }
    assert!(sent > 0, "the leader talks to its new learner");
}
