use plexus::Replicated;
use serde::{Deserialize, Serialize};

#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
#[plexus(tag = "")]
pub struct Empty;

#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
#[plexus(tag = "demo Frog")]
pub struct Spaced;

#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
#[plexus(tag = "demo.\tFrog")]
pub struct Tabbed;

#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
#[plexus(tag = demo)]
pub struct NotAString;

fn main() {}
