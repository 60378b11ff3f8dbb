//! From the connection flags to a connected [`Client`].

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sprawl_client::{Client, ClientConfig, ServerTrust};

use crate::cli::ConnectionArgs;
use crate::failure::usage;

/// The certificate a node started with its defaults in the current
/// directory generates: trusting it by default makes the README tour work
/// without flags, and is no weaker than the explicit `--ca` it stands for.
pub const DEFAULT_CA_PATH: &str = "data/tls/cert.pem";

/// How to verify the node: an explicit CA file, explicit `--insecure`, or
/// the default CA file if it exists. Never insecure unless asked.
pub fn choose_trust(
    ca: Option<&Path>,
    insecure: bool,
    default_ca: Option<PathBuf>,
) -> anyhow::Result<ServerTrust> {
    match (ca, insecure) {
        (Some(_), true) => Err(usage(
            "--insecure and --ca (or SPRAWLCTL_CA) exclude each other: \
             verify against a CA, or explicitly do not verify",
        )),
        (Some(path), false) => Ok(ServerTrust::CaFile(path.to_owned())),
        (None, true) => Ok(ServerTrust::InsecureSkipVerification),
        (None, false) => default_ca.map(ServerTrust::CaFile).ok_or_else(|| {
            usage(format!(
                "no CA to verify the node's certificate: pass --ca PATH (a node prints the \
                 path of the certificate it generates) or set SPRAWLCTL_CA; ./{DEFAULT_CA_PATH} \
                 does not exist here; --insecure skips verification"
            ))
        }),
    }
}

pub fn client_config(args: &ConnectionArgs) -> anyhow::Result<ClientConfig> {
    let default_ca = Path::new(DEFAULT_CA_PATH);
    let default_ca = default_ca.is_file().then(|| default_ca.to_owned());
    let trust = choose_trust(args.ca.as_deref(), args.insecure, default_ca)?;
    if trust == ServerTrust::InsecureSkipVerification && std::io::stderr().is_terminal() {
        eprintln!("sprawlctl: warning: not verifying the node's certificate (--insecure)");
    }
    let mut config = ClientConfig::new(args.node.as_str(), trust);
    config.server_name = args.server_name.clone();
    config.client_id = "sprawlctl".into();
    config.request_timeout = args.timeout;
    config.connect_timeout = args.timeout;
    Ok(config)
}

/// Connects and runs the handshake; the error names the node.
pub async fn connect(args: &ConnectionArgs) -> anyhow::Result<Client> {
    let config = client_config(args)?;
    Client::connect(config)
        .await
        .with_context(|| format!("connecting to node {}", args.node))
}

/// Closes the connection in order so the node does not wait for its idle
/// timeout; the close goes out when the connection's tasks next run.
pub async fn close(client: &Client) {
    client.close();
    // Lets quinn's connection and endpoint drivers send CONNECTION_CLOSE
    // before the runtime stops (best effort: the node times out otherwise).
    for _ in 0..CLOSE_YIELDS {
        tokio::task::yield_now().await;
    }
}

/// Scheduler turns given to quinn's drivers after closing.
const CLOSE_YIELDS: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::{status_of, ExitStatus};

    #[test]
    fn trust_is_explicit_or_the_default_file_never_insecure_by_itself() {
        let given = Path::new("/etc/sprawl/ca.pem");
        let default = || Some(PathBuf::from(DEFAULT_CA_PATH));
        assert_eq!(
            choose_trust(Some(given), false, default()).unwrap(),
            ServerTrust::CaFile(given.into())
        );
        assert_eq!(
            choose_trust(None, false, default()).unwrap(),
            ServerTrust::CaFile(DEFAULT_CA_PATH.into())
        );
        assert_eq!(
            choose_trust(None, true, default()).unwrap(),
            ServerTrust::InsecureSkipVerification
        );
        let none = choose_trust(None, false, None).unwrap_err();
        assert_eq!(status_of(&none), ExitStatus::Usage);
        assert!(none.to_string().contains("--ca"), "{none}");
        let both = choose_trust(Some(given), true, default()).unwrap_err();
        assert_eq!(status_of(&both), ExitStatus::Usage);
    }
}
