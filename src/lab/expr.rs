//! The lab's per-peer expressions: `--messages "10 if peer == 1 else 0"`.
//!
//! A small, documented grammar rather than a general expression crate:
//! the one well-known Rust crate with Python-like conditionals is AGPL, and
//! the lab needs only integers, two variables and a conditional. Every
//! error names the column where it was found.
//!
//! ```text
//! expr  := or ( "if" or "else" expr )?        Python's conditional
//! or    := and ( "or" and )*
//! and   := not ( "and" not )*
//! not   := "not" not | cmp
//! cmp   := sum ( ( "==" | "!=" | "<" | "<=" | ">" | ">=" ) sum )?
//! sum   := term ( ( "+" | "-" ) term )*
//! term  := unary ( ( "*" | "/" | "%" ) unary )*
//! unary := "-" unary | atom
//! atom  := INTEGER | "peer" | "peers" | "(" expr ")"
//! ```
//!
//! Values are 64-bit integers; a comparison or `not` gives 1 or 0, and a
//! condition is true when it is not 0. `peer` is the peer's number, from 1;
//! `peers` is how many there are. Overflow and division by zero are errors.
//!
//! ```
//! use plexus::lab::Expr;
//! let e = Expr::parse("10 if peer == 1 else 0").unwrap();
//! assert_eq!((e.eval(1, 8).unwrap(), e.eval(2, 8).unwrap()), (10, 0));
//! let err = Expr::parse("10 if peer == else 0").unwrap_err();
//! assert_eq!(err.column, 15);
//! ```

use std::fmt;

/// A parsed expression of `peer` and `peers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expr {
    node: Node,
}

/// Why an expression was refused: where, and what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {what}")]
pub struct ExprError {
    /// The column (1-based, in characters) where the problem is.
    pub column: usize,
    /// What is wrong there.
    pub what: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Int(i64),
    Peer,
    Peers,
    Neg(Box<Node>, usize),
    Not(Box<Node>),
    Bin(Op, Box<Node>, Box<Node>, usize),
    If(Box<Node>, Box<Node>, Box<Node>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Int(i64),
    Word(String),
    Sym(&'static str),
    End,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(n) => write!(f, "`{n}`"),
            Self::Word(w) => write!(f, "`{w}`"),
            Self::Sym(s) => write!(f, "`{s}`"),
            Self::End => f.write_str("the end"),
        }
    }
}

const SYMBOLS: [&str; 14] = [
    "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "(", ")", "=",
];

fn tokenize(text: &str) -> Result<Vec<(Tok, usize)>, ExprError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '_') {
                i += 1;
            }
            let digits: String = chars[start..i].iter().filter(|c| **c != '_').collect();
            let n = digits.parse().map_err(|_| ExprError {
                column,
                what: format!("the number {digits} is too large"),
            })?;
            out.push((Tok::Int(n), column));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((Tok::Word(chars[start..i].iter().collect()), column));
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let Some(sym) = SYMBOLS.iter().find(|s| rest.starts_with(**s)) else {
                return Err(ExprError {
                    column,
                    what: format!("unexpected character `{c}`"),
                });
            };
            if *sym == "=" {
                return Err(ExprError {
                    column,
                    what: "`=` is not a comparison; write `==`".into(),
                });
            }
            i += sym.len();
            out.push((Tok::Sym(sym), column));
        }
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.at.min(self.toks.len() - 1)].0
    }

    fn column(&self) -> usize {
        self.toks[self.at.min(self.toks.len() - 1)].1
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Word(x) if x == w)
    }

    fn is_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Tok::Sym(x) if *x == s)
    }

    fn bump(&mut self) -> usize {
        let column = self.column();
        self.at += 1;
        column
    }

    fn fail<T>(&self, expected: &str) -> Result<T, ExprError> {
        Err(ExprError {
            column: self.column(),
            what: format!("expected {expected}, found {}", self.peek()),
        })
    }

    fn expr(&mut self) -> Result<Node, ExprError> {
        let then = self.or()?;
        if !self.is_word("if") {
            return Ok(then);
        }
        self.bump();
        let cond = self.or()?;
        if !self.is_word("else") {
            return self.fail("`else`");
        }
        self.bump();
        let otherwise = self.expr()?;
        Ok(Node::If(
            Box::new(cond),
            Box::new(then),
            Box::new(otherwise),
        ))
    }

    fn or(&mut self) -> Result<Node, ExprError> {
        let mut left = self.and()?;
        while self.is_word("or") {
            let column = self.bump();
            left = Node::Bin(Op::Or, Box::new(left), Box::new(self.and()?), column);
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, ExprError> {
        let mut left = self.not()?;
        while self.is_word("and") {
            let column = self.bump();
            left = Node::Bin(Op::And, Box::new(left), Box::new(self.not()?), column);
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Node, ExprError> {
        if self.is_word("not") {
            self.bump();
            return Ok(Node::Not(Box::new(self.not()?)));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Node, ExprError> {
        let left = self.sum()?;
        let op = match self.peek() {
            Tok::Sym("==") => Op::Eq,
            Tok::Sym("!=") => Op::Ne,
            Tok::Sym("<") => Op::Lt,
            Tok::Sym("<=") => Op::Le,
            Tok::Sym(">") => Op::Gt,
            Tok::Sym(">=") => Op::Ge,
            _ => return Ok(left),
        };
        let column = self.bump();
        let right = self.sum()?;
        Ok(Node::Bin(op, Box::new(left), Box::new(right), column))
    }

    fn sum(&mut self) -> Result<Node, ExprError> {
        let mut left = self.term()?;
        loop {
            let op = match self.peek() {
                Tok::Sym("+") => Op::Add,
                Tok::Sym("-") => Op::Sub,
                _ => return Ok(left),
            };
            let column = self.bump();
            left = Node::Bin(op, Box::new(left), Box::new(self.term()?), column);
        }
    }

    fn term(&mut self) -> Result<Node, ExprError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Sym("*") => Op::Mul,
                Tok::Sym("/") => Op::Div,
                Tok::Sym("%") => Op::Rem,
                _ => return Ok(left),
            };
            let column = self.bump();
            left = Node::Bin(op, Box::new(left), Box::new(self.unary()?), column);
        }
    }

    fn unary(&mut self) -> Result<Node, ExprError> {
        if self.is_sym("-") {
            let column = self.bump();
            return Ok(Node::Neg(Box::new(self.unary()?), column));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Node, ExprError> {
        let node = match self.peek().clone() {
            Tok::Int(n) => Node::Int(n),
            Tok::Word(w) if w == "peer" => Node::Peer,
            Tok::Word(w) if w == "peers" => Node::Peers,
            Tok::Word(w) if !["if", "else", "and", "or", "not"].contains(&w.as_str()) => {
                return Err(ExprError {
                    column: self.column(),
                    what: format!("unknown name `{w}` (the names are `peer` and `peers`)"),
                });
            }
            Tok::Sym("(") => {
                self.bump();
                let inner = self.expr()?;
                if !self.is_sym(")") {
                    return self.fail("`)`");
                }
                inner
            }
            _ => return self.fail("a number, `peer`, `peers` or `(`"),
        };
        self.bump();
        Ok(node)
    }
}

impl Expr {
    /// Parses `text`; the error names the column of the first problem.
    pub fn parse(text: &str) -> Result<Self, ExprError> {
        let mut parser = Parser {
            toks: tokenize(text)?,
            at: 0,
        };
        let node = parser.expr()?;
        if *parser.peek() != Tok::End {
            return parser.fail("an operator or the end");
        }
        Ok(Self { node })
    }

    /// The value for peer number `peer` of `peers`.
    pub fn eval(&self, peer: i64, peers: i64) -> Result<i64, ExprError> {
        eval(&self.node, peer, peers)
    }
}

fn overflow(column: usize) -> ExprError {
    ExprError {
        column,
        what: "the value overflows a 64-bit integer".into(),
    }
}

fn eval(node: &Node, peer: i64, peers: i64) -> Result<i64, ExprError> {
    let value = |n: &Node| eval(n, peer, peers);
    Ok(match node {
        Node::Int(n) => *n,
        Node::Peer => peer,
        Node::Peers => peers,
        Node::Neg(n, column) => value(n)?.checked_neg().ok_or_else(|| overflow(*column))?,
        Node::Not(n) => i64::from(value(n)? == 0),
        Node::If(cond, then, otherwise) => {
            if value(cond)? != 0 {
                value(then)?
            } else {
                value(otherwise)?
            }
        }
        Node::Bin(Op::And, a, b, _) => i64::from(value(a)? != 0 && value(b)? != 0),
        Node::Bin(Op::Or, a, b, _) => i64::from(value(a)? != 0 || value(b)? != 0),
        Node::Bin(op, a, b, column) => {
            let (a, b, column) = (value(a)?, value(b)?, *column);
            let zero = || ExprError {
                column,
                what: "division by zero".into(),
            };
            match op {
                Op::Add => a.checked_add(b).ok_or_else(|| overflow(column))?,
                Op::Sub => a.checked_sub(b).ok_or_else(|| overflow(column))?,
                Op::Mul => a.checked_mul(b).ok_or_else(|| overflow(column))?,
                Op::Div if b == 0 => return Err(zero()),
                Op::Rem if b == 0 => return Err(zero()),
                Op::Div => a.checked_div(b).ok_or_else(|| overflow(column))?,
                Op::Rem => a.checked_rem(b).ok_or_else(|| overflow(column))?,
                Op::Eq => i64::from(a == b),
                Op::Ne => i64::from(a != b),
                Op::Lt => i64::from(a < b),
                Op::Le => i64::from(a <= b),
                Op::Gt => i64::from(a > b),
                Op::Ge => i64::from(a >= b),
                Op::And | Op::Or => unreachable!("handled above"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(text: &str, peer: i64) -> i64 {
        Expr::parse(text).unwrap().eval(peer, 8).unwrap()
    }

    #[test]
    fn arithmetic_conditionals_and_precedence() {
        assert_eq!(at("10 if peer == 1 else 0", 1), 10);
        assert_eq!(at("10 if peer == 1 else 0", 2), 0);
        assert_eq!(at("1 + 2 * 3", 1), 7);
        assert_eq!(at("(1 + 2) * 3", 1), 9);
        assert_eq!(at("-peer % 3", 4), -1);
        assert_eq!(at("peers - peer", 3), 5);
        assert_eq!(
            at(
                "5 if peer <= 2 and not peer == 1 else 1 if peer > 6 or peer == 4 else 0",
                2
            ),
            5
        );
        assert_eq!(
            at(
                "5 if peer <= 2 and not peer == 1 else 1 if peer > 6 or peer == 4 else 0",
                4
            ),
            1
        );
        assert_eq!(
            at(
                "5 if peer <= 2 and not peer == 1 else 1 if peer > 6 or peer == 4 else 0",
                5
            ),
            0
        );
        assert_eq!(at("1_000", 1), 1000);
    }

    #[test]
    fn errors_name_the_column() {
        let cases = [
            ("10 if peer == else 0", 15, "expected a number"),
            ("10 if peer == 1", 16, "expected `else`"),
            ("peer = 1", 6, "write `==`"),
            ("pear * 2", 1, "unknown name `pear`"),
            ("(1 + 2", 7, "expected `)`"),
            ("1 2", 3, "expected an operator"),
            ("3 $ 4", 3, "unexpected character `$`"),
            ("", 1, "expected a number"),
            ("99999999999999999999", 1, "too large"),
        ];
        for (text, column, what) in cases {
            let err = Expr::parse(text).unwrap_err();
            assert_eq!(err.column, column, "{text:?}: {err}");
            assert!(err.what.contains(what), "{text:?}: {err}");
        }
        let err = Expr::parse("10 / (peer - 1)")
            .unwrap()
            .eval(1, 8)
            .unwrap_err();
        assert_eq!((err.column, err.what.as_str()), (4, "division by zero"));
        let err = Expr::parse("9223372036854775807 + peer")
            .unwrap()
            .eval(1, 8)
            .unwrap_err();
        assert_eq!(err.column, 21);
    }

    proptest! {
        /// No input makes the parser or the evaluator panic.
        #[test]
        fn never_panics(text in "[ -~]{0,40}", peer in any::<i64>(), peers in any::<i64>()) {
            if let Ok(e) = Expr::parse(&text) {
                let _ = e.eval(peer, peers);
            }
        }

        /// Sums of small terms evaluate as Rust does.
        #[test]
        fn sums_match(a in -1000i64..1000, b in -1000i64..1000, c in 1i64..100) {
            let text = format!("{a} + {b} * peer - peers % {c}");
            let e = Expr::parse(&text).unwrap();
            prop_assert_eq!(e.eval(3, 7).unwrap(), a + b * 3 - 7 % c);
        }
    }
}
