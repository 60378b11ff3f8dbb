//! `sprawlctl`: the operator CLI of a Sprawl node.
//!
//! * `topic create | list | describe | delete`
//! * `publish`: messages from `-m`, a file or stdin, batched; exit status 3
//!   when only some were acknowledged
//! * `consume`: to the end each partition had at the start, or `--follow`;
//!   `--group` resumes from and commits the group's offsets
//! * `status`: node identity, topics, optionally the admin `/health`
//! * `rebalance plan | apply | status | auto`, `partition move`: partition
//!   moves between the node's shards, through its admin HTTP endpoint
//! * `load`, `predict`: the node's recorded load and its forecasts (admin
//!   HTTP endpoint too)
//! * `forecast eval`: baseline load forecasters scored on a CSV trace; no
//!   node, no connection, no runtime
//! * `cert ca | node`: the cluster CA and node certificates; no node either
//!
//! A failure prints one line, `sprawlctl: <what failed>: <why>`, on stderr;
//! exit statuses are in [`failure::ExitStatus`].

mod admin_http;
mod cert;
mod cli;
mod cluster;
mod connect;
mod consume;
mod failure;
mod forecast;
mod load;
mod output;
mod publish;
mod rebalance;
mod status;
mod table;
mod topic;

use std::future::Future;
use std::time::Duration;

use clap::Parser;

use crate::cli::{AdminCommand, Cli, ClusterCommand, Command, ConnectionArgs, Format, NodeCommand};
use crate::failure::{one_line, status_of, ExitStatus};

fn main() {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        // Offline: no runtime, no connection.
        Command::Forecast(command) => forecast::run(command, cli.format),
        Command::Cert(command) => cert::run(command, cli.format),
        Command::Node(command) => block_on(run(&cli.connection, cli.format, command)),
        // HTTP to the admin endpoint: no QUIC connection.
        Command::Admin(command) => block_on(run_admin(command, cli.connection.timeout, cli.format)),
    };
    if let Err(error) = outcome {
        let status = status_of(&error);
        if status != ExitStatus::OutputClosed {
            eprintln!("sprawlctl: {}", one_line(&error));
        }
        std::process::exit(status.code());
    }
}

fn block_on(command: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::Error::new(e).context("starting the tokio runtime"))
        .and_then(|runtime| runtime.block_on(command))
}

async fn run_admin(
    command: &AdminCommand,
    timeout: Duration,
    format: Format,
) -> anyhow::Result<()> {
    match command {
        AdminCommand::Rebalance(command) => rebalance::run(command, timeout, format).await,
        AdminCommand::Partition(command) => {
            rebalance::run_partition(command, timeout, format).await
        }
        AdminCommand::Load(args) => load::load(args, timeout, format).await,
        AdminCommand::Predict(args) => load::predict(args, timeout, format).await,
        AdminCommand::Cluster(ClusterCommand::Status(args)) => {
            cluster::status(args, timeout, format).await
        }
        AdminCommand::Cluster(ClusterCommand::Replicas { topic, admin }) => {
            cluster::replicas(admin, topic, timeout, format).await
        }
        AdminCommand::Cluster(ClusterCommand::MoveReplica {
            topic,
            partition,
            from,
            to,
            admin,
        }) => cluster::move_replica(admin, topic, *partition, *from, *to, timeout, format).await,
    }
}

async fn run(
    connection: &ConnectionArgs,
    format: Format,
    command: &NodeCommand,
) -> anyhow::Result<()> {
    // A publish's input is opened first: a missing file fails before the
    // connection is even tried.
    let publish_input = match command {
        NodeCommand::Publish(args) => Some(publish::open_input(args)?),
        _ => None,
    };
    let client = connect::connect(connection).await?;
    let outcome = match command {
        NodeCommand::Topic(command) => topic::run(&client, command, format).await,
        NodeCommand::Publish(args) => {
            let input = publish_input.expect("opened above");
            publish::run(&client, input, args, format).await
        }
        NodeCommand::Consume(args) => consume::run(&client, args, format).await,
        NodeCommand::Status(args) => status::run(&client, args, connection.timeout, format).await,
    };
    connect::close(&client).await;
    outcome
}
