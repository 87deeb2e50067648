//! kernfs against a reference model of the tree.
//!
//! `filesystem_matches_model`: random sequences of mkdir, create, symlink, link, unlink,
//! rmdir, rename, open, close, read, write, stat, readdir and readlink — on good and bad
//! paths, including `.`, `..`, empty components, NUL and over-long names, and a dynamic
//! directory — run on a [`Filesystem`] with a small dentry cache and on a plain model of
//! names, kinds, contents and open handles. After every step: the same result (value or
//! error), the same tree (names in order, kinds, sizes, contents, which names share an
//! inode), the dentry tree's invariants, an empty deferred list, a cache within its capacity,
//! and, with no handle open, no live dentry outside the tree. At the end every handle is
//! closed, the filesystem released, and the leak registry must be empty.
//!
//! `walking_dynamic_names_keeps_live_dentries_bounded`: walking N distinct names in a
//! dynamic directory never holds more than the cache capacity plus the path's dentries.
// Under --cfg loom or shuttle refwatch's primitives are the checker's, usable only inside a
// model: these property tests run in normal builds only.
#![cfg(not(any(loom, shuttle)))]

use proptest::prelude::*;
use proptest::test_runner::Config;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};
use refwatch::kernfs::testing::Proc;
use refwatch::kernfs::{Error, File, Filesystem, Inodes, Kind, Options, NAME_MAX, PATH_MAX};
use refwatch::leak::{LeakMode, Registry};
use refwatch::sync::Arc;
use std::collections::HashMap;

/// 128 cases of up to 40 steps, each step followed by a full comparison of the trees.
fn config() -> Config {
    Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    }
}

// =============================================================================================
// The reference model
// =============================================================================================

type Id = usize;
const ROOT: Id = 0;

#[derive(Clone, Debug)]
enum Node {
    /// Entries in order.
    Dir(Vec<(String, Id)>),
    File(Vec<u8>),
    Symlink(String),
    /// The dynamic directory: `<u64>` names a fresh file whose contents are the name.
    Proc,
}

/// What a path resolves to.
#[derive(Clone, Debug, PartialEq)]
enum Found {
    Node(Id),
    /// A transient file of the dynamic directory (a fresh inode at every lookup).
    ProcFile(String),
}

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    None,
    Unit(Result<(), Error>),
    Stat(Result<(Kind, u64), Error>),
    Names(Result<Vec<(String, Kind)>, Error>),
    Target(Result<String, Error>),
    Bytes(Result<Vec<u8>, Error>),
}

#[derive(Clone, Debug)]
struct Model {
    /// Every inode ever made; ids are never reused.
    nodes: Vec<Node>,
    /// Open handles, by the inode they hold.
    handles: Vec<Id>,
    cache_capacity: usize,
    last: Outcome,
}

#[derive(Clone, Debug)]
enum Op {
    Mkdir(String),
    Create(String),
    Symlink(String, String),
    Link(String, String),
    Unlink(String),
    Rmdir(String),
    Rename(String, String),
    Open(String),
    Close(usize),
    Write(usize, Vec<u8>),
    Read(usize),
    Stat(String),
    Readdir(String),
    Readlink(String),
}

fn components(path: &str) -> Result<Vec<&str>, Error> {
    if path.len() > PATH_MAX {
        return Err(Error::NameTooLong);
    }
    if path.contains('\0') {
        return Err(Error::InvalidName);
    }
    let rest = path.strip_prefix('/').unwrap_or(path);
    if rest.is_empty() {
        return Ok(vec![]);
    }
    let mut out = vec![];
    for c in rest.split('/') {
        if c.is_empty() {
            return Err(Error::InvalidName);
        }
        if c.len() > NAME_MAX {
            return Err(Error::NameTooLong);
        }
        out.push(c);
    }
    Ok(out)
}

fn parent_and_name(path: &str) -> Result<Option<(Vec<&str>, &str)>, Error> {
    let mut comps = components(path)?;
    let Some(name) = comps.pop() else {
        return Ok(None);
    };
    if name == "." || name == ".." {
        return Err(Error::InvalidName);
    }
    Ok(Some((comps, name)))
}

impl Model {
    fn kind(&self, f: &Found) -> Kind {
        match f {
            Found::ProcFile(_) => Kind::File,
            Found::Node(id) => match &self.nodes[*id] {
                Node::Dir(_) | Node::Proc => Kind::Dir,
                Node::File(_) => Kind::File,
                Node::Symlink(_) => Kind::Symlink,
            },
        }
    }

    fn size(&self, f: &Found) -> u64 {
        match f {
            Found::ProcFile(name) => name.len() as u64,
            Found::Node(id) => match &self.nodes[*id] {
                Node::Dir(_) | Node::Proc => 0,
                Node::File(data) => data.len() as u64,
                Node::Symlink(target) => target.len() as u64,
            },
        }
    }

    fn lookup(&self, dir: Id, name: &str) -> Result<Found, Error> {
        match &self.nodes[dir] {
            Node::Dir(entries) => entries
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, id)| Found::Node(*id))
                .ok_or(Error::NotFound),
            Node::Proc => match name.parse::<u64>() {
                Ok(_) => Ok(Found::ProcFile(name.to_owned())),
                Err(_) => Err(Error::NotFound),
            },
            _ => Err(Error::NotDir),
        }
    }

    /// The walk: every directory on the way (for `..`), ending with what `comps` names.
    fn resolve(&self, comps: &[&str]) -> Result<Vec<Found>, Error> {
        let mut path = vec![Found::Node(ROOT)];
        for &c in comps {
            let cur = path.last().unwrap().clone();
            if self.kind(&cur) != Kind::Dir {
                return Err(Error::NotDir);
            }
            let Found::Node(dir) = cur else {
                unreachable!()
            };
            match c {
                "." => {}
                ".." => {
                    if path.len() == 1 {
                        return Err(Error::InvalidName);
                    }
                    path.pop();
                }
                name => path.push(self.lookup(dir, name)?),
            }
        }
        Ok(path)
    }

    fn resolve_one(&self, comps: &[&str]) -> Result<Found, Error> {
        Ok(self.resolve(comps)?.pop().unwrap())
    }

    fn resolve_dir(&self, comps: &[&str]) -> Result<Vec<Found>, Error> {
        let path = self.resolve(comps)?;
        if self.kind(path.last().unwrap()) != Kind::Dir {
            return Err(Error::NotDir);
        }
        Ok(path)
    }

    fn has_children(&self, f: &Found) -> bool {
        match f {
            Found::Node(id) => match &self.nodes[*id] {
                Node::Dir(e) => !e.is_empty(),
                Node::Proc => true, // lists "1" and "2"
                _ => false,
            },
            Found::ProcFile(_) => false,
        }
    }

    fn entries(&mut self, dir: Id) -> &mut Vec<(String, Id)> {
        match &mut self.nodes[dir] {
            Node::Dir(e) => e,
            _ => unreachable!("checked to be a static directory"),
        }
    }

    fn new_node(&mut self, node: Node) -> Id {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// mkdir / create / symlink / link: the same checks, then `node` under the name.
    fn make(&mut self, path: &str, node: impl FnOnce(&mut Model) -> Id) -> Result<(), Error> {
        let (dir, name) = parent_and_name(path)?.ok_or(Error::Exists)?;
        let parent = self.resolve_dir(&dir)?.pop().unwrap();
        let Found::Node(parent) = parent else {
            unreachable!()
        };
        match self.lookup(parent, name) {
            Ok(_) => return Err(Error::Exists),
            Err(Error::NotFound) => {}
            Err(e) => return Err(e),
        }
        if matches!(self.nodes[parent], Node::Proc) {
            return Err(Error::NotPermitted);
        }
        let id = node(self);
        self.entries(parent).push((name.to_owned(), id));
        Ok(())
    }

    fn link(&mut self, existing: &str, new: &str) -> Result<(), Error> {
        let comps = components(existing)?;
        parent_and_name(new)?.ok_or(Error::Exists)?;
        let target = self.resolve_one(&comps)?;
        if self.kind(&target) == Kind::Dir {
            return Err(Error::NotPermitted);
        }
        // A transient file of the dynamic directory can be linked: it becomes a static one.
        let id = match target {
            Found::Node(id) => id,
            Found::ProcFile(name) => self.new_node(Node::File(name.into_bytes())),
        };
        self.make(new, |_| id)
    }

    fn unlink(&mut self, path: &str) -> Result<(), Error> {
        let (dir, name) = parent_and_name(path)?.ok_or(Error::IsDir)?;
        let Found::Node(parent) = self.resolve_dir(&dir)?.pop().unwrap() else {
            unreachable!()
        };
        let child = self.lookup(parent, name)?;
        if self.kind(&child) == Kind::Dir {
            return Err(Error::IsDir);
        }
        if matches!(self.nodes[parent], Node::Proc) {
            return Err(Error::NotPermitted);
        }
        self.entries(parent).retain(|(n, _)| n != name);
        Ok(())
    }

    fn rmdir(&mut self, path: &str) -> Result<(), Error> {
        let (dir, name) = parent_and_name(path)?.ok_or(Error::Busy)?;
        let Found::Node(parent) = self.resolve_dir(&dir)?.pop().unwrap() else {
            unreachable!()
        };
        let child = self.lookup(parent, name)?;
        if self.kind(&child) != Kind::Dir {
            return Err(Error::NotDir);
        }
        if self.has_children(&child) {
            return Err(Error::NotEmpty);
        }
        self.entries(parent).retain(|(n, _)| n != name);
        Ok(())
    }

    fn rename(&mut self, old: &str, new: &str) -> Result<(), Error> {
        let (old_dir, old_name) = parent_and_name(old)?.ok_or(Error::Busy)?;
        let (new_dir, new_name) = parent_and_name(new)?.ok_or(Error::Busy)?;
        let Found::Node(from) = self.resolve_dir(&old_dir)?.pop().unwrap() else {
            unreachable!()
        };
        let child = self.lookup(from, old_name)?;
        let to_path = self.resolve_dir(&new_dir)?;
        let Found::Node(to) = to_path.last().unwrap().clone() else {
            unreachable!()
        };
        if self.kind(&child) == Kind::Dir && to_path.contains(&child) {
            return Err(Error::IntoOwnSubtree);
        }
        if from == to && old_name == new_name {
            return Ok(());
        }
        let victim = match self.lookup(to, new_name) {
            Ok(v) => Some(v),
            Err(Error::NotFound) => None,
            Err(e) => return Err(e),
        };
        if let Some(v) = &victim {
            if matches!((v, &child), (Found::Node(a), Found::Node(b)) if a == b) {
                return Ok(());
            }
            match (self.kind(&child) == Kind::Dir, self.kind(v) == Kind::Dir) {
                (true, false) => return Err(Error::NotDir),
                (false, true) => return Err(Error::IsDir),
                (true, true) if self.has_children(v) => return Err(Error::NotEmpty),
                _ => {}
            }
        }
        if matches!(self.nodes[from], Node::Proc) || matches!(self.nodes[to], Node::Proc) {
            return Err(Error::NotPermitted);
        }
        let Found::Node(child) = child else {
            unreachable!()
        };
        self.entries(from).retain(|(n, _)| n != old_name);
        let entries = self.entries(to);
        entries.retain(|(n, _)| n != new_name);
        entries.push((new_name.to_owned(), child));
        Ok(())
    }

    fn open(&mut self, path: &str) -> Result<(), Error> {
        let found = self.resolve_one(&components(path)?)?;
        let id = match found {
            Found::Node(id) => id,
            Found::ProcFile(name) => self.new_node(Node::File(name.into_bytes())),
        };
        self.handles.push(id);
        Ok(())
    }

    fn write(&mut self, handle: usize, data: &[u8]) -> Outcome {
        let Some(&id) = self.handles.get(handle) else {
            return Outcome::None;
        };
        Outcome::Unit(match &mut self.nodes[id] {
            Node::File(contents) => {
                *contents = data.to_vec();
                Ok(())
            }
            Node::Dir(_) | Node::Proc => Err(Error::IsDir),
            Node::Symlink(_) => Err(Error::Invalid),
        })
    }

    fn read(&self, handle: usize) -> Outcome {
        let Some(&id) = self.handles.get(handle) else {
            return Outcome::None;
        };
        Outcome::Bytes(match &self.nodes[id] {
            Node::File(contents) => Ok(contents.clone()),
            Node::Dir(_) | Node::Proc => Err(Error::IsDir),
            Node::Symlink(_) => Err(Error::Invalid),
        })
    }

    fn stat(&self, path: &str) -> Result<(Kind, u64), Error> {
        let f = self.resolve_one(&components(path)?)?;
        Ok((self.kind(&f), self.size(&f)))
    }

    fn readdir(&self, path: &str) -> Result<Vec<(String, Kind)>, Error> {
        let f = self.resolve_one(&components(path)?)?;
        match f {
            Found::Node(id) => match &self.nodes[id] {
                Node::Dir(entries) => Ok(entries
                    .iter()
                    .map(|(n, id)| (n.clone(), self.kind(&Found::Node(*id))))
                    .collect()),
                Node::Proc => Ok(vec![("1".into(), Kind::File), ("2".into(), Kind::File)]),
                _ => Err(Error::NotDir),
            },
            Found::ProcFile(_) => Err(Error::NotDir),
        }
    }

    fn readlink(&self, path: &str) -> Result<String, Error> {
        match self.resolve_one(&components(path)?)? {
            Found::Node(id) => match &self.nodes[id] {
                Node::Symlink(t) => Ok(t.clone()),
                _ => Err(Error::Invalid),
            },
            Found::ProcFile(_) => Err(Error::Invalid),
        }
    }
}

// =============================================================================================
// Strategies
// =============================================================================================

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => prop::sample::select(vec!["a", "b", "c"]).prop_map(String::from),
        2 => Just("proc".to_owned()),
        2 => prop::sample::select(vec!["1", "22", "x"]).prop_map(String::from),
        1 => Just(".".to_owned()),
        1 => Just("..".to_owned()),
        1 => Just(String::new()),
        1 => Just("n\0ul".to_owned()),
        1 => Just("l".repeat(NAME_MAX + 1)),
    ]
}

fn path() -> impl Strategy<Value = String> {
    (prop::collection::vec(name(), 0..=3), any::<bool>()).prop_map(|(comps, absolute)| {
        let joined = comps.join("/");
        if absolute || joined.is_empty() {
            format!("/{joined}")
        } else {
            joined
        }
    })
}

struct Machine;

impl ReferenceStateMachine for Machine {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        (0usize..=3)
            .prop_map(|cache_capacity| Model {
                nodes: vec![Node::Dir(vec![("proc".into(), 1)]), Node::Proc],
                handles: vec![],
                cache_capacity,
                last: Outcome::None,
            })
            .boxed()
    }

    fn transitions(_: &Model) -> BoxedStrategy<Op> {
        let data = prop::collection::vec(any::<u8>(), 0..4);
        prop_oneof![
            4 => path().prop_map(Op::Mkdir),
            4 => path().prop_map(Op::Create),
            1 => (prop::sample::select(vec!["/a", "t", ""]), path())
                .prop_map(|(t, p)| Op::Symlink(t.into(), p)),
            2 => (path(), path()).prop_map(|(a, b)| Op::Link(a, b)),
            3 => path().prop_map(Op::Unlink),
            2 => path().prop_map(Op::Rmdir),
            4 => (path(), path()).prop_map(|(a, b)| Op::Rename(a, b)),
            3 => path().prop_map(Op::Open),
            2 => any::<usize>().prop_map(Op::Close),
            2 => (any::<usize>(), data).prop_map(|(h, d)| Op::Write(h, d)),
            1 => any::<usize>().prop_map(Op::Read),
            3 => path().prop_map(Op::Stat),
            2 => path().prop_map(Op::Readdir),
            1 => path().prop_map(Op::Readlink),
        ]
        .boxed()
    }

    fn apply(mut m: Model, op: &Op) -> Model {
        let handle = |m: &Model, h: usize| {
            if m.handles.is_empty() {
                usize::MAX
            } else {
                h % m.handles.len()
            }
        };
        m.last = match op {
            Op::Mkdir(p) => Outcome::Unit(m.make(p, |m| m.new_node(Node::Dir(vec![])))),
            Op::Create(p) => Outcome::Unit(m.make(p, |m| m.new_node(Node::File(vec![])))),
            Op::Symlink(t, p) => Outcome::Unit(if t.is_empty() {
                Err(Error::InvalidName)
            } else {
                m.make(p, |m| m.new_node(Node::Symlink(t.clone())))
            }),
            Op::Link(a, b) => Outcome::Unit(m.link(a, b)),
            Op::Unlink(p) => Outcome::Unit(m.unlink(p)),
            Op::Rmdir(p) => Outcome::Unit(m.rmdir(p)),
            Op::Rename(a, b) => Outcome::Unit(m.rename(a, b)),
            Op::Open(p) => Outcome::Unit(m.open(p)),
            Op::Close(h) => {
                let h = handle(&m, *h);
                if h != usize::MAX {
                    m.handles.remove(h);
                }
                Outcome::None
            }
            Op::Write(h, d) => {
                let h = handle(&m, *h);
                m.write(h, d)
            }
            Op::Read(h) => m.read(handle(&m, *h)),
            Op::Stat(p) => Outcome::Stat(m.stat(p)),
            Op::Readdir(p) => Outcome::Names(m.readdir(p)),
            Op::Readlink(p) => Outcome::Target(m.readlink(p)),
        };
        m
    }
}

// =============================================================================================
// The system under test
// =============================================================================================

struct Sut {
    registry: Arc<Registry>,
    inodes: Inodes,
    fs: Filesystem,
    handles: Vec<File>,
}

struct KernfsTest;

impl Sut {
    fn run(&mut self, op: Op) -> Outcome {
        let handle = |s: &Sut, h: usize| {
            if s.handles.is_empty() {
                None
            } else {
                Some(h % s.handles.len())
            }
        };
        match op {
            Op::Mkdir(p) => Outcome::Unit(self.fs.mkdir(&p)),
            Op::Create(p) => Outcome::Unit(self.fs.create(&p)),
            Op::Symlink(t, p) => Outcome::Unit(self.fs.symlink(&t, &p)),
            Op::Link(a, b) => Outcome::Unit(self.fs.link(&a, &b)),
            Op::Unlink(p) => Outcome::Unit(self.fs.unlink(&p)),
            Op::Rmdir(p) => Outcome::Unit(self.fs.rmdir(&p)),
            Op::Rename(a, b) => Outcome::Unit(self.fs.rename(&a, &b)),
            Op::Open(p) => Outcome::Unit(self.fs.open(&p).map(|f| self.handles.push(f))),
            Op::Close(h) => {
                if let Some(h) = handle(self, h) {
                    self.handles.remove(h).close();
                }
                Outcome::None
            }
            Op::Write(h, d) => match handle(self, h) {
                Some(h) => Outcome::Unit(self.handles[h].write(&d)),
                None => Outcome::None,
            },
            Op::Read(h) => match handle(self, h) {
                Some(h) => Outcome::Bytes(self.handles[h].read()),
                None => Outcome::None,
            },
            Op::Stat(p) => Outcome::Stat(self.fs.stat(&p).map(|s| (s.kind, s.size))),
            Op::Readdir(p) => Outcome::Names(
                self.fs
                    .readdir(&p)
                    .map(|es| es.into_iter().map(|e| (e.name, e.kind)).collect()),
            ),
            Op::Readlink(p) => Outcome::Target(self.fs.readlink(&p)),
        }
    }
}

/// Compares the whole static tree below `dir` (at `path`), and which names share an inode.
fn compare_tree(sut: &Sut, model: &Model, dir: Id, path: &str, inos: &mut HashMap<Id, u64>) {
    let Node::Dir(entries) = &model.nodes[dir] else {
        return;
    };
    let listed: Vec<(String, Kind)> = sut
        .fs
        .readdir(if path.is_empty() { "/" } else { path })
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.kind))
        .collect();
    let expected: Vec<(String, Kind)> = entries
        .iter()
        .map(|(n, id)| (n.clone(), model.kind(&Found::Node(*id))))
        .collect();
    assert_eq!(listed, expected, "readdir {path:?}");
    for (name, id) in entries {
        let child = format!("{path}/{name}");
        let stat = sut.fs.stat(&child).unwrap();
        assert_eq!(stat.size, model.size(&Found::Node(*id)), "size of {child}");
        let ino = *inos.entry(*id).or_insert(stat.ino);
        assert_eq!(
            stat.ino, ino,
            "{child}: names of one inode share its number"
        );
        match &model.nodes[*id] {
            Node::File(data) => {
                assert_eq!(
                    &sut.fs.open(&child).unwrap().read().unwrap(),
                    data,
                    "{child}"
                )
            }
            Node::Symlink(t) => assert_eq!(&sut.fs.readlink(&child).unwrap(), t),
            Node::Dir(_) => compare_tree(sut, model, *id, &child, inos),
            Node::Proc => {}
        }
    }
}

impl StateMachineTest for KernfsTest {
    type SystemUnderTest = Sut;
    type Reference = Machine;

    fn init_test(model: &Model) -> Sut {
        let registry = Arc::new(Registry::new(LeakMode::Warn));
        let inodes = Inodes::with_registry(&registry);
        let root = Proc::new().listed(&["1", "2"]).mount(&inodes);
        let fs = Filesystem::with_options(
            root,
            Options {
                cache_capacity: model.cache_capacity,
                registry: Some(Arc::clone(&registry)),
            },
        )
        .unwrap();
        Sut {
            registry,
            inodes,
            fs,
            handles: vec![],
        }
    }

    fn apply(mut sut: Sut, model: &Model, op: Op) -> Sut {
        let desc = format!("{op:?}");
        let outcome = sut.run(op);
        assert_eq!(outcome, model.last, "{desc}: filesystem vs model");
        sut
    }

    fn check_invariants(sut: &Sut, model: &Model) {
        let in_tree = sut.fs.check_tree().expect("dentry tree invariants");
        let stats = sut.fs.stats();
        assert_eq!(stats.deferred, 0, "deferred list processed: {stats:?}");
        assert!(stats.cached_dentries <= model.cache_capacity, "{stats:?}");
        assert!(stats.live_dentries >= in_tree, "{stats:?}");
        if sut.handles.is_empty() {
            // Only open handles keep dentries outside the tree alive.
            assert_eq!(stats.live_dentries, in_tree, "{stats:?}");
        }
        assert_eq!(sut.handles.len(), model.handles.len());
        compare_tree(sut, model, ROOT, "", &mut HashMap::new());
    }

    fn teardown(mut sut: Sut, _: Model) {
        for f in sut.handles.drain(..) {
            f.close();
        }
        let in_tree = sut.fs.check_tree().unwrap();
        assert_eq!(sut.fs.stats().live_dentries, in_tree);
        let Sut {
            registry,
            inodes,
            fs,
            ..
        } = sut;
        fs.release();
        assert_eq!(inodes.live(), 0, "release drops every inode");
        let report = registry.report();
        assert!(report.is_empty(), "{report}");
    }
}

prop_state_machine! {
    #![proptest_config(config())]

    #[test]
    fn filesystem_matches_model(sequential 1..40 => KernfsTest);
}

// =============================================================================================
// Bounded live dentries
// =============================================================================================

proptest! {
    #![proptest_config(Config { cases: 64, failure_persistence: None, ..Config::default() })]

    /// Walking `n` distinct names in a dynamic directory, each kept or not as `keep` says,
    /// never holds more than the cache capacity plus the dentries of one path (`/`, the
    /// directory, the name), and leaves nothing behind after release.
    #[test]
    fn walking_dynamic_names_keeps_live_dentries_bounded(
        n in 1usize..2000,
        capacity in 0usize..40,
        keep in prop::collection::vec(any::<bool>(), 1..8),
        depth in 1usize..4,
    ) {
        let registry = Arc::new(Registry::new(LeakMode::Warn));
        let inodes = Inodes::with_registry(&registry);
        let root = inodes.dir();
        // The dynamic directory sits `depth` static directories down.
        let mut dir = root.clone();
        let mut prefix = String::new();
        for level in 1..depth {
            let next = inodes.dir();
            dir.add_child(&format!("s{level}"), next.clone()).unwrap();
            prefix.push_str(&format!("/s{level}"));
            dir = next;
        }
        let pattern = keep.clone();
        let dynamic = Proc::new()
            .keep(move |i| pattern[i as usize % pattern.len()])
            .contents(|_| Vec::new())
            .build(&inodes);
        dir.add_child("dyn", dynamic).unwrap();
        drop(dir);
        let fs = Filesystem::with_options(root, Options {
            cache_capacity: capacity,
            registry: Some(Arc::clone(&registry)),
        }).unwrap();
        // Dentries on one path, root included: `/`, the static levels, `dyn`, the name.
        let path_len = depth + 2;
        for i in 0..n {
            prop_assert_eq!(fs.walk(&format!("{prefix}/dyn/{i}")).map(|s| s.kind), Ok(Kind::File));
        }
        let stats = fs.stats();
        prop_assert!(stats.peak_live_dentries <= capacity + path_len, "{:?}", stats);
        prop_assert!(stats.cached_dentries <= capacity);
        prop_assert_eq!(stats.deferred, 0);
        drop(fs);
        prop_assert_eq!(inodes.live(), 0);
        prop_assert!(registry.report().is_empty());
    }
}
