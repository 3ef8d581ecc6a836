//! Where a replica keeps checkpoints of its tentative state, so that a
//! late op replays only the ops after the nearest one before it.

use std::collections::VecDeque;

use super::super::id::OpId;
use super::ReplicaConfig;

/// Keep a copy of `state` as the checkpoint at `id`; when there are too
/// many, first drop one so that the gaps between them grow with the
/// distance from the newest: the one whose neighbours are closest
/// relative to how far back they are (spans and distances in Lamport time,
/// the new checkpoint counting as the newest's right neighbour; the oldest
/// stays). Near the end of the tentative log, where most late ops land,
/// they stay `checkpoint_every` ops apart, as when only the newest were
/// kept; further back they thin out geometrically instead of stopping, so a
/// late op `d` places back replays about `2d` ops, not the whole log from
/// the stable snapshot. (With a single one, it is replaced.)
pub(super) fn push_checkpoint<T: Clone>(
    checkpoints: &mut VecDeque<(OpId, T)>,
    config: ReplicaConfig,
    id: OpId,
    state: &T,
) {
    if config.max_checkpoints == 0 {
        return;
    }
    if checkpoints.len() >= config.max_checkpoints {
        let n = checkpoints.len();
        if n < 2 {
            checkpoints.pop_front();
        } else {
            let lamport = |i: usize| checkpoints.get(i).map_or(id, |(cp, _)| *cp).lamport;
            // Dropping checkpoint `i` leaves a gap `span` at `back` from the
            // new one: drop the smallest span / back (cross-multiplied).
            let span = |i: usize| u128::from(lamport(i + 1).saturating_sub(lamport(i - 1)));
            let back = |i: usize| u128::from(id.lamport.saturating_sub(lamport(i - 1))) + 1;
            let drop = (2..n).fold(1, |best, i| {
                if span(i) * back(best) < span(best) * back(i) {
                    i
                } else {
                    best
                }
            });
            checkpoints.remove(drop);
        }
    }
    checkpoints.push_back((id, state.clone()));
}
