use plexus::Replicated;
use serde::{Deserialize, Serialize};

#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
#[plexus(tag = "demo.Typo", tga = "x")]
pub struct Typo;

#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
#[plexus(tag = "demo.Twice", tag = "demo.Again")]
pub struct Twice;

#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
#[plexus(tag = "demo.Split")]
#[plexus(tag = "demo.Split2")]
pub struct Split;

#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
#[plexus = "demo.Word"]
pub struct Word;

fn main() {}
