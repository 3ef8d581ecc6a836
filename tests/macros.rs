//! The code `#[derive(Replicated)]` and `#[replicated]` generate, at run
//! time: op tags and encoding, `apply`, observer dispatch.
//!
//! Shouting through a node (`Leaf::shout_*`) is tested with the nodes; here
//! the generated items are driven directly.

use std::future::Future;

use plexus::{
    replicated, Delivery, Leaf, NodeId, OpId, Operation, Replicated, ShoutError, TypeTag,
};
use serde::{Deserialize, Serialize};

/// A pond: every kind of shout.
#[derive(Replicated, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[plexus(tag = "test.Pond")]
pub struct Pond {
    croaks: Vec<String>,
    count: u32,
    position: (i32, i32),
    resets: u32,
    steps: u32,
    secrets: Vec<Vec<u8>>,
    notes: Vec<(String, u8)>,
}

#[replicated]
impl Pond {
    /// A frog croaks.
    #[shout]
    pub fn croak(&mut self, by: String) {
        self.croaks.push(by);
    }

    /// Commutes with everything.
    #[shout(commutative)]
    pub fn bump(&mut self, n: u32) {
        self.count += n;
    }

    /// Wire tag pinned to `jmp`.
    #[shout(tag = "jmp")]
    pub fn jump(&mut self, x: i32, y: i32) {
        self.position = (self.position.0 + x, self.position.1 + y);
    }

    /// No arguments: a unit variant.
    #[shout]
    pub fn reset(&mut self) {
        self.resets += 1;
        self.count = 0;
    }

    /// A raw identifier.
    #[shout]
    pub fn r#move(&mut self, steps: u32) {
        self.steps += steps;
    }

    #[shout(commutative, tag = "psst")]
    fn whisper(&mut self, secret: Vec<u8>) {
        self.secrets.push(secret);
    }

    #[shout]
    pub(crate) fn swap(&mut self, (a, b): (i32, i32)) {
        self.position = (b, a);
    }

    /// Arguments named like the observer's own parameters.
    #[shout]
    pub fn note(&mut self, state: String, delivery: u8) {
        self.notes.push((state, delivery));
    }

    /// An argument of type `Self`.
    #[shout]
    pub fn merge(&mut self, other: Self) {
        self.count += other.count;
    }

    /// Not a shout: left alone.
    pub fn summary(&self) -> String {
        format!("{} croaks", self.croaks.len())
    }
}

/// Records every observer call, as text.
#[derive(Default)]
struct Recorder {
    calls: Vec<String>,
}

impl PondObserver for Recorder {
    fn croak(&mut self, state: &Pond, by: &String, delivery: &Delivery) {
        self.calls.push(format!(
            "croak {by} after {} croaks, op {}",
            state.croaks.len(),
            delivery.op
        ));
    }

    fn jump(&mut self, state: &Pond, x: &i32, y: &i32, _: &Delivery) {
        self.calls
            .push(format!("jump {x} {y} to {:?}", state.position));
    }

    fn reset(&mut self, _: &Pond, _: &Delivery) {
        self.calls.push("reset".to_owned());
    }

    fn r#move(&mut self, _: &Pond, steps: &u32, _: &Delivery) {
        self.calls.push(format!("move {steps}"));
    }

    fn swap(&mut self, _: &Pond, pair: &(i32, i32), _: &Delivery) {
        self.calls.push(format!("swap {pair:?}"));
    }

    fn note(&mut self, _: &Pond, text: &String, level: &u8, delivery: &Delivery) {
        self.calls
            .push(format!("note {text} {level} stable={}", delivery.stable));
    }

    fn on_stable(&mut self, _: &Pond, op: &PondOp, _: &Delivery) {
        self.calls.push(format!("stable {}", op.tag()));
    }
}

/// Implements no method at all: every default is a no-op.
struct Deaf;

impl PondObserver for Deaf {}

/// A delivery of op number `seq` from node 7.
fn delivery(seq: u64, stable: bool) -> Delivery {
    let origin = NodeId::from_u64(7);
    Delivery::new(
        OpId {
            lamport: seq,
            origin,
            seq,
        },
        NodeId::from_u64(1),
        stable,
    )
}

fn every_op() -> Vec<PondOp> {
    vec![
        PondOp::Croak("amy".to_owned()),
        PondOp::Bump(3),
        PondOp::Jump(1, -2),
        PondOp::Reset,
        PondOp::Move(5),
        PondOp::Whisper(vec![1, 2, 3]),
        PondOp::Swap((4, 5)),
        PondOp::Note("hi".to_owned(), 9),
        PondOp::Merge(Pond {
            count: 10,
            ..Pond::default()
        }),
    ]
}

fn to_cbor(op: &PondOp) -> Vec<u8> {
    let mut bytes = Vec::new();
    ciborium::into_writer(op, &mut bytes).expect("encoding to a Vec cannot fail");
    bytes
}

#[test]
fn type_tag_comes_from_the_attribute() {
    assert_eq!(Pond::TYPE_TAG, "test.Pond");
}

#[test]
fn op_tags_are_method_names_unless_pinned() {
    assert_eq!(
        PondOp::TAGS,
        ["croak", "bump", "jmp", "reset", "move", "psst", "swap", "note", "merge"]
    );
    let tags: Vec<_> = every_op().iter().map(Operation::tag).collect();
    assert_eq!(tags, PondOp::TAGS);
}

#[test]
fn only_ops_marked_commutative_commute() {
    let commutative: Vec<_> = every_op()
        .iter()
        .filter(|op| op.is_commutative())
        .map(Operation::tag)
        .collect();
    assert_eq!(commutative, ["bump", "psst"]);
}

#[test]
fn ops_survive_a_cbor_round_trip() {
    for op in every_op() {
        let bytes = to_cbor(&op);
        let decoded: PondOp = ciborium::from_reader(bytes.as_slice()).expect("decodes");
        assert_eq!(decoded.tag(), op.tag());
        assert_eq!(to_cbor(&decoded), bytes, "{op:?} changed in a round trip");

        let (mut expected, mut actual) = (Pond::default(), Pond::default());
        expected.apply(&op);
        actual.apply(&decoded);
        assert_eq!(actual, expected, "{op:?} decoded into a different call");
    }
}

#[test]
fn the_wire_carries_the_tag_not_the_variant_name() {
    let value: ciborium::Value =
        ciborium::from_reader(to_cbor(&PondOp::Jump(1, -2)).as_slice()).expect("decodes");
    let map = value.as_map().expect("an op with arguments is a map");
    assert_eq!(map.len(), 1);
    assert_eq!(map[0].0, ciborium::Value::Text("jmp".to_owned()));

    let value: ciborium::Value =
        ciborium::from_reader(to_cbor(&PondOp::Reset).as_slice()).expect("decodes");
    assert_eq!(value, ciborium::Value::Text("reset".to_owned()));

    let value: ciborium::Value =
        ciborium::from_reader(to_cbor(&PondOp::Move(1)).as_slice()).expect("decodes");
    assert_eq!(
        value.as_map().expect("a map")[0].0,
        ciborium::Value::Text("move".to_owned())
    );
}

#[test]
fn an_unknown_tag_does_not_decode() {
    let mut bytes = Vec::new();
    let renamed = ciborium::Value::Map(vec![(
        ciborium::Value::Text("jump".to_owned()),
        ciborium::Value::Array(vec![1.into(), 2.into()]),
    )]);
    ciborium::into_writer(&renamed, &mut bytes).expect("encodes");
    assert!(ciborium::from_reader::<PondOp, _>(bytes.as_slice()).is_err());
}

#[test]
fn debug_shows_the_variant_without_arguments() {
    assert_eq!(
        format!("{:?}", PondOp::Croak("amy".to_owned())),
        "PondOp::Croak(..)"
    );
    assert_eq!(format!("{:?}", PondOp::Reset), "PondOp::Reset");
}

#[test]
fn apply_calls_the_method() {
    let mut pond = Pond::default();
    for op in every_op() {
        pond.apply(&op);
    }
    assert_eq!(
        pond,
        Pond {
            croaks: vec!["amy".to_owned()],
            count: 10,
            position: (5, 4),
            resets: 1,
            steps: 5,
            secrets: vec![vec![1, 2, 3]],
            notes: vec![("hi".to_owned(), 9)],
        }
    );
    assert_eq!(pond.summary(), "1 croaks");
}

#[test]
fn notify_calls_the_observer_method_of_the_op() {
    let mut recorder = Recorder::default();
    let mut pond = Pond::default();
    for (seq, op) in (1..).zip(every_op()) {
        pond.apply(&op);
        Pond::notify(&mut recorder, &pond, &op, &delivery(seq, false));
    }
    let expected_op = OpId {
        lamport: 1,
        origin: NodeId::from_u64(7),
        seq: 1,
    };
    assert_eq!(
        recorder.calls,
        [
            format!("croak amy after 1 croaks, op {expected_op}"),
            "jump 1 -2 to (1, -2)".to_owned(),
            "reset".to_owned(),
            "move 5".to_owned(),
            "swap (4, 5)".to_owned(),
            "note hi 9 stable=false".to_owned(),
        ]
    );
}

#[test]
fn notify_stable_calls_on_stable() {
    let mut recorder = Recorder::default();
    let pond = Pond::default();
    Pond::notify_stable(
        &mut recorder,
        &pond,
        &PondOp::Jump(1, 2),
        &delivery(1, true),
    );
    assert_eq!(recorder.calls, ["stable jmp"]);
}

#[test]
fn default_observer_methods_do_nothing() {
    let mut deaf = Deaf;
    let mut pond = Pond::default();
    for (seq, op) in (1..).zip(every_op()) {
        pond.apply(&op);
        Pond::notify(&mut deaf, &pond, &op, &delivery(seq, false));
        Pond::notify_stable(&mut deaf, &pond, &op, &delivery(seq, true));
    }
    let mut recorder = Recorder::default();
    Pond::notify(&mut recorder, &pond, &PondOp::Bump(1), &delivery(1, false));
    assert!(
        recorder.calls.is_empty(),
        "`bump` is not observed by Recorder"
    );
}

/// Accepts what `Leaf::shout` returns.
fn is_a_shout<F>(_: F)
where
    F: Future<Output = Result<OpId, ShoutError>> + Send + 'static,
{
}

#[test]
fn the_leaf_extension_has_a_shout_per_method() {
    // Type-checks the generated signatures; shouting itself needs a node.
    let _shouts = |leaf: &Leaf<Pond>| {
        is_a_shout(leaf.shout_croak("amy".to_owned()));
        is_a_shout(leaf.shout_bump(1));
        is_a_shout(leaf.shout_jump(1, 2));
        is_a_shout(leaf.shout_reset());
        is_a_shout(leaf.shout_move(3));
        is_a_shout(leaf.shout_whisper(vec![]));
        is_a_shout(leaf.shout_swap((1, 2)));
        is_a_shout(leaf.shout_note("a".to_owned(), 1));
        is_a_shout(leaf.shout_merge(Pond::default()));
        leaf.observe(Deaf)
    };
}

/// A private type whose shouts are all private: the generated items are
/// private too.
#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
#[plexus(tag = "test.Quiet")]
struct Quiet {
    hush: u8,
}

#[replicated]
impl Quiet {
    #[shout]
    fn hush(&mut self) {
        self.hush += 1;
    }
}

/// A type with no shouts: an uninhabited op type.
#[derive(Replicated, Clone, Default, Serialize, Deserialize)]
#[plexus(tag = "test.Still")]
struct Still;

#[replicated]
impl Still {}

#[test]
fn private_shouts_generate_private_items() {
    let mut quiet = Quiet::default();
    quiet.apply(&QuietOp::Hush);
    assert_eq!(quiet.hush, 1);
    assert_eq!(QuietOp::TAGS, ["hush"]);
}

#[test]
fn an_impl_without_shouts_has_no_ops() {
    assert!(StillOp::TAGS.is_empty());
    let mut bytes = Vec::new();
    ciborium::into_writer(&"reset", &mut bytes).expect("encodes");
    assert!(ciborium::from_reader::<StillOp, _>(bytes.as_slice()).is_err());

    let mut bytes = Vec::new();
    ciborium::into_writer(&Still, &mut bytes).expect("encodes");
    assert_eq!(Still::TYPE_TAG, "test.Still");
}
