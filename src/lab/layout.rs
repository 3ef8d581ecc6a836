//! Where the lab draws each peer: a force-directed layout (the
//! `force_graph` crate), stepped a little at every tick so the picture
//! moves smoothly as links come and go.

use std::collections::{BTreeMap, BTreeSet};

use force_graph::{DefaultNodeIdx, EdgeData, ForceGraph, NodeData, SimulationParameters};

/// The layout of the peers (numbered from 1) and the links between them.
pub(crate) struct Layout {
    graph: ForceGraph<u32>,
    nodes: BTreeMap<u32, DefaultNodeIdx>,
    edges: BTreeSet<(u32, u32)>,
}

impl std::fmt::Debug for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layout")
            .field("nodes", &self.nodes.len())
            .field("edges", &self.edges.len())
            .finish()
    }
}

/// The simulation's time step and steps per tick.
const DT: f32 = 0.035;
const STEPS: usize = 12;

impl Layout {
    /// `peers` peers on a circle, no links yet.
    pub(crate) fn new(peers: u32) -> Self {
        // Softer springs than the crate's default: with 64 peers and ~2
        // links each, the default pulls hubs' neighbours onto each other
        // (tried: 21 pairs closer than 3% of the picture, none with this).
        let parameters = SimulationParameters {
            force_spring: 0.05,
            ..SimulationParameters::default()
        };
        let mut layout = Self {
            graph: ForceGraph::new(parameters),
            nodes: BTreeMap::new(),
            edges: BTreeSet::new(),
        };
        let n = peers.max(1) as f32;
        let radius = 60.0 * n.sqrt() + 100.0;
        for peer in 1..=peers {
            let angle = std::f32::consts::TAU * (peer - 1) as f32 / n;
            let at = (radius * angle.cos(), radius * angle.sin());
            layout.add(peer, at);
        }
        layout
    }

    fn add(&mut self, peer: u32, (x, y): (f32, f32)) {
        let idx = self.graph.add_node(NodeData {
            x,
            y,
            user_data: peer,
            ..NodeData::default()
        });
        self.nodes.insert(peer, idx);
    }

    /// Sets the links (pairs of peers, smaller first) and steps the layout.
    pub(crate) fn step(&mut self, edges: BTreeSet<(u32, u32)>) {
        if edges != self.edges {
            // The crate adds edges but does not remove them: rebuild, with
            // every peer where it was.
            let at = self.positions();
            self.graph.clear();
            self.nodes.clear();
            for (peer, xy) in at {
                self.add(peer, xy);
            }
            for (a, b) in &edges {
                if let (Some(&ia), Some(&ib)) = (self.nodes.get(a), self.nodes.get(b)) {
                    self.graph.add_edge(ia, ib, EdgeData::default());
                }
            }
            self.edges = edges;
        }
        for _ in 0..STEPS {
            self.graph.update(DT);
        }
    }

    /// Steps the layout `rounds` more ticks' worth with the links as they
    /// are: the final picture settles.
    pub(crate) fn settle(&mut self, rounds: usize) {
        for _ in 0..rounds * STEPS {
            self.graph.update(DT);
        }
    }

    /// Each peer's position, in the simulation's units.
    pub(crate) fn positions(&self) -> BTreeMap<u32, (f32, f32)> {
        let mut out = BTreeMap::new();
        self.graph.visit_nodes(|n| {
            out.insert(n.data.user_data, (n.x(), n.y()));
        });
        out
    }

    /// Each peer's position scaled into the unit square (a margin kept
    /// by the drawing), the aspect ratio preserved.
    pub(crate) fn unit_positions(&self) -> BTreeMap<u32, (f32, f32)> {
        let at = self.positions();
        let finite = at.values().filter(|(x, y)| x.is_finite() && y.is_finite());
        let (mut lo, mut hi) = ((f32::MAX, f32::MAX), (f32::MIN, f32::MIN));
        for &(x, y) in finite {
            lo = (lo.0.min(x), lo.1.min(y));
            hi = (hi.0.max(x), hi.1.max(y));
        }
        let span = (hi.0 - lo.0).max(hi.1 - lo.1).max(1.0);
        let (cx, cy) = ((lo.0 + hi.0) / 2.0, (lo.1 + hi.1) / 2.0);
        at.into_iter()
            .map(|(peer, (x, y))| {
                let (x, y) = if x.is_finite() && y.is_finite() {
                    (0.5 + (x - cx) / span, 0.5 + (y - cy) / span)
                } else {
                    (0.5, 0.5)
                };
                (peer, (x, y))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linked_peers_end_closer_than_unlinked_ones() {
        let mut layout = Layout::new(6);
        // Two triangles: 1-2-3 and 4-5-6.
        let edges: BTreeSet<(u32, u32)> = [(1, 2), (2, 3), (1, 3), (4, 5), (5, 6), (4, 6)].into();
        for _ in 0..100 {
            layout.step(edges.clone());
        }
        let at = layout.unit_positions();
        let d = |a: u32, b: u32| {
            let (p, q) = (at[&a], at[&b]);
            ((p.0 - q.0).powi(2) + (p.1 - q.1).powi(2)).sqrt()
        };
        assert!(at
            .values()
            .all(|(x, y)| (0.0..=1.0).contains(x) && (0.0..=1.0).contains(y)));
        let within = (d(1, 2) + d(2, 3) + d(4, 5) + d(5, 6)) / 4.0;
        let across = (d(1, 4) + d(2, 5) + d(3, 6)) / 3.0;
        assert!(within < across, "within {within}, across {across}: {at:?}");
    }
}
