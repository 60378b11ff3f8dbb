//! `cert ca | node`: the cluster CA and the node certificates that nodes
//! authenticate each other with (mutual TLS, ALPN `sprawl-peer/1`). Runs
//! offline: no node, no connection.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use sprawl_io::quic::{
    cluster_ca_paths, create_cluster_ca, issue_node_certificate, peer_server_name, CertPaths,
    TlsError,
};

use crate::cli::Format;
use crate::failure::usage;
use crate::output::{print, print_json};

#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Create the cluster CA: ca.pem and ca-key.pem (mode 0600) in --dir.
    /// Never replaces an existing CA: every node it certified would be cut
    /// off.
    Ca(CaArgs),
    /// Issue a node certificate signed by the cluster CA: node-<ID>.pem (the
    /// certificate, then the CA's) and node-<ID>-key.pem (mode 0600), valid
    /// for node-<ID>.sprawl.cluster and every --name. Replaces an earlier one.
    Node(NodeArgs),
}

#[derive(Args, Debug)]
pub struct CaArgs {
    /// Directory for ca.pem and ca-key.pem (created if needed).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct NodeArgs {
    /// Directory holding the CA's ca.pem and ca-key.pem.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// The node's id (its certificate names node-<ID>.sprawl.cluster).
    #[arg(long, value_name = "ID")]
    pub node_id: u64,
    /// Another name the certificate is valid for: an IP address or DNS name
    /// clients dial, e.g. 127.0.0.2. Repeat for several.
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// Directory for the node's files (created if needed). Default: --ca-dir.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn run(command: &CertCommand, format: Format) -> anyhow::Result<()> {
    match command {
        CertCommand::Ca(args) => {
            let paths = create_cluster_ca(&args.dir).context("cert ca")?;
            report(&paths, None, format)
        }
        CertCommand::Node(args) => node(args, format),
    }
}

fn node(args: &NodeArgs, format: Format) -> anyhow::Result<()> {
    let names: Vec<&str> = args.names.iter().map(String::as_str).collect();
    let out = args.out.as_deref().unwrap_or(&args.ca_dir);
    let context = || format!("cert node {}", args.node_id);
    let paths = issue_node_certificate(&cluster_ca_paths(&args.ca_dir), args.node_id, &names, out)
        .map_err(|error| match error {
            TlsError::BadSubjectName { .. } => usage(format!("--name: {error}")),
            other => anyhow::Error::new(other),
        })
        .with_context(context)?;
    report(&paths, Some(args.node_id), format)
}

fn report(paths: &CertPaths, node_id: Option<u64>, format: Format) -> anyhow::Result<()> {
    let server_name = node_id.map(peer_server_name);
    match format {
        Format::Json => {
            let mut document = json!({
                "certificate": shown(&paths.cert_path),
                "key": shown(&paths.key_path),
            });
            if let (Some(id), Some(name)) = (node_id, &server_name) {
                document["node_id"] = json!(id);
                document["server_name"] = json!(name);
            }
            print_json(&document)
        }
        Format::Text => {
            let mut text = format!(
                "certificate: {}\nkey:         {}\n",
                shown(&paths.cert_path),
                shown(&paths.key_path)
            );
            if let Some(name) = server_name {
                text.push_str(&format!("server name: {name}\n"));
            }
            print(&text)
        }
    }
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}
