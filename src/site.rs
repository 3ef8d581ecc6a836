//! Sites: a node declared in a TOML file, with the links it dials.
//!
//! ```toml
//! # site-b.toml
//! listen = "127.0.0.1:7002"       # where this site accepts links
//! data_dir = "sites/b"            # node.key + node.crt (from `plexus ca issue`)
//! ca = "ca/ca.crt"                # trust: peers must hold a certificate from this CA
//! allow = []                      # and/or: node ids (64 hex digits) to accept
//! links = ["127.0.0.1:7001"]      # sites this one dials (upstream/downstream alike)
//! max_frame = 1048576             # optional, bytes
//! max_link_queue = 16777216       # optional, bytes queued per link before ops are shed
//! ```
//!
//! `plexus node --config site-b.toml` runs such a site as a pure repeater:
//! it holds no application types and relays every op, opaque, by its tag.
//! Applications load the same file with [`SiteConfig::load`] and start
//! their node with [`SiteConfig::start`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{LinkError, StartError};
use crate::node::{Node, NodeBuilder};
use crate::proto::NodeId;
use crate::tls::{self, Identity, Trust};

/// Why a site file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SiteConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for a site, or a value is out of range.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong (with the line, where TOML knows it).
        reason: String,
    },
    /// The identity or the trust material could not be loaded.
    #[error("{path}: {reason}")]
    Identity {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The node could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// A declared link could not be made on the first attempt (the site
    /// keeps retrying it in the background).
    #[error("link to {addr}: {source}")]
    Link {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: LinkError,
    },
}

/// A site, as declared in its TOML file. Paths are relative to the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Where to accept links.
    pub listen: SocketAddr,
    /// The directory holding `node.key` and `node.crt`.
    pub data_dir: PathBuf,
    /// The cluster CA certificate to trust (optional if `allow` is given).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Node ids to accept, 64 hex digits each (optional if `ca` is given).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Sites to dial.
    #[serde(default)]
    pub links: Vec<SocketAddr>,
    /// The largest frame, in bytes (default 1 MiB).
    #[serde(default)]
    pub max_frame: Option<usize>,
    /// Bytes queued for one link before ops sent on it are shed (default
    /// 16 MiB; see [`NodeConfig::max_link_queue`](crate::NodeConfig::max_link_queue)).
    #[serde(default)]
    pub max_link_queue: Option<usize>,
}

impl SiteConfig {
    /// Read and check a site file; relative paths in it become relative to
    /// the file's directory.
    pub fn load(path: &Path) -> Result<Self, SiteConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| SiteConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.data_dir = base.join(&config.data_dir);
        config.ca = config.ca.map(|ca| base.join(ca));
        Ok(config)
    }

    /// Parse a site file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, SiteConfigError> {
        let invalid = |reason: String| SiteConfigError::Invalid {
            path: origin.to_owned(),
            reason,
        };
        let config: SiteConfig = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if config.ca.is_none() && config.allow.is_empty() {
            return Err(invalid(
                "give `ca` or `allow` (or both): whom does this site trust?".into(),
            ));
        }
        for id in &config.allow {
            tls::parse_node_id(id).map_err(|e| invalid(format!("allow entry {id:?}: {e}")))?;
        }
        Ok(config)
    }

    /// The identity from `data_dir`.
    pub fn identity(&self) -> Result<Identity, SiteConfigError> {
        Identity::load(&self.data_dir).map_err(|e| SiteConfigError::Identity {
            path: self.data_dir.clone(),
            reason: e.to_string(),
        })
    }

    /// The trust rule from `ca` and `allow`.
    pub fn trust(&self) -> Result<Trust, SiteConfigError> {
        let allow: Vec<NodeId> = self
            .allow
            .iter()
            .filter_map(|id| tls::parse_node_id(id).ok())
            .collect();
        match &self.ca {
            Some(path) => {
                let root =
                    tls::load_ca_certificate(path).map_err(|e| SiteConfigError::Identity {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                let trust = Trust::ca(root);
                Ok(if allow.is_empty() {
                    trust
                } else {
                    trust.and_allow(allow)
                })
            }
            None => Ok(Trust::allow_list(allow)),
        }
    }

    /// A node builder set up from this file (listen, identity, trust,
    /// frame and queue limits); add types or settings, then `start`.
    pub fn builder(&self) -> Result<NodeBuilder, SiteConfigError> {
        let mut builder = Node::builder()
            .listen(self.listen)
            .identity(self.identity()?)
            .trust(self.trust()?);
        if let Some(max) = self.max_frame {
            builder = builder.max_frame(max);
        }
        if let Some(bound) = self.max_link_queue {
            builder = builder.max_link_queue(Some(bound));
        }
        Ok(builder)
    }

    /// Start the node and dial every declared link; the first link that
    /// fails is returned as an error (and the node is dropped). For sites
    /// that may start before their peers, use [`builder`](Self::builder)
    /// and [`Node::keep_linking`], as `plexus node` does.
    pub async fn start(&self) -> Result<Node, SiteConfigError> {
        let node = self.builder()?.start().await?;
        let mut first_error = None;
        for addr in &self.links {
            match node.link(*addr).await {
                Ok(peer) => tracing::info!(%addr, %peer, "linked"),
                Err(source) => {
                    tracing::warn!(%addr, error = %source, "link failed");
                    first_error.get_or_insert(SiteConfigError::Link {
                        addr: *addr,
                        source,
                    });
                }
            }
        }
        match first_error {
            None => Ok(node),
            Some(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_file_parses_and_names_its_mistakes() {
        let ok = "listen = \"127.0.0.1:7001\"\ndata_dir = \"a\"\nca = \"ca.crt\"\nlinks = [\"127.0.0.1:7002\"]\n";
        let config = SiteConfig::parse(ok, Path::new("a.toml")).expect("valid");
        assert_eq!(config.links.len(), 1);

        let no_trust = "listen = \"127.0.0.1:7001\"\ndata_dir = \"a\"\n";
        let err = SiteConfig::parse(no_trust, Path::new("a.toml")).expect_err("no trust");
        assert!(
            err.to_string().contains("whom does this site trust"),
            "{err}"
        );

        let typo = "listen = \"127.0.0.1:7001\"\ndata_dir = \"a\"\nca = \"x\"\nlinkz = []\n";
        let err = SiteConfig::parse(typo, Path::new("a.toml")).expect_err("unknown key");
        assert!(err.to_string().contains("linkz"), "{err}");

        let bad_id = "listen = \"127.0.0.1:7001\"\ndata_dir = \"a\"\nallow = [\"xyz\"]\n";
        let err = SiteConfig::parse(bad_id, Path::new("a.toml")).expect_err("bad id");
        assert!(err.to_string().contains("xyz"), "{err}");
    }
}
