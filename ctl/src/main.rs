//! `sprawlctl`: the operator CLI of a Sprawl node.
//!
//! * `topic create | list | describe | delete`
//! * `publish`: messages from `-m`, a file or stdin, batched; exit status 3
//!   when only some were acknowledged
//! * `consume`: to the end each partition had at the start, or `--follow`;
//!   `--group` resumes from and commits the group's offsets
//! * `status`: node identity, topics, optionally the admin `/health`
//!
//! A failure prints one line, `sprawlctl: <what failed>: <why>`, on stderr;
//! exit statuses are in [`failure::ExitStatus`].

mod cli;
mod connect;
mod consume;
mod failure;
mod output;
mod publish;
mod status;
mod table;
mod topic;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::failure::{one_line, status_of, ExitStatus};

fn main() {
    let cli = Cli::parse();
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::Error::new(e).context("starting the tokio runtime"))
        .and_then(|runtime| runtime.block_on(run(cli)));
    if let Err(error) = outcome {
        let status = status_of(&error);
        if status != ExitStatus::OutputClosed {
            eprintln!("sprawlctl: {}", one_line(&error));
        }
        std::process::exit(status.code());
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // A publish's input is opened first: a missing file fails before the
    // connection is even tried.
    let publish_input = match &cli.command {
        Command::Publish(args) => Some(publish::open_input(args)?),
        _ => None,
    };
    let client = connect::connect(&cli.connection).await?;
    let outcome = match &cli.command {
        Command::Topic(command) => topic::run(&client, command, cli.format).await,
        Command::Publish(args) => {
            let input = publish_input.expect("opened above");
            publish::run(&client, input, args, cli.format).await
        }
        Command::Consume(args) => consume::run(&client, args, cli.format).await,
        Command::Status(args) => {
            status::run(&client, args, cli.connection.timeout, cli.format).await
        }
    };
    connect::close(&client).await;
    outcome
}
