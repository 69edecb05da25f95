//! Nodes registered at run time through MCMP, in a table shared by every
//! child of one generation (an anonymous mapping made in post_config).
//!
//! Any child may serve an MCMP request and write the table; every child's
//! accept thread reads it a few times a second and binds, re-binds or closes
//! listeners to match. Writers and readers take a small cross-process lock
//! (an atomic holding the owner's pid; a dead owner's lock is taken over).
//! Everything in the mapping is an atomic, so no `unsafe` is needed here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{
    AtomicI32, AtomicI64, AtomicU32, AtomicU8, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed,
    Ordering::Release,
};

use crate::os::{RobustMutex, SharedArray};

pub const ROUTE_MAX: usize = 64;
pub const BALANCER_MAX: usize = 40;
pub const HOST_MAX: usize = 64;
/// Contexts and aliases of one node, as text (see `Apps`).
pub const APPS_MAX: usize = 2048;

/// A fixed-size string in shared memory.
#[repr(C)]
pub struct Text<const N: usize> {
    len: AtomicU32,
    bytes: [AtomicU8; N],
}

impl<const N: usize> Text<N> {
    pub fn get(&self) -> String {
        let n = (self.len.load(Relaxed) as usize).min(N);
        let v: Vec<u8> = self.bytes[..n].iter().map(|b| b.load(Relaxed)).collect();
        String::from_utf8_lossy(&v).into_owned()
    }

    pub fn fits(s: &str) -> bool {
        s.len() <= N
    }

    /// Stores `s`; false (and nothing stored) if it does not fit.
    pub fn set(&self, s: &str) -> bool {
        if !Self::fits(s) {
            return false;
        }
        for (d, b) in self.bytes.iter().zip(s.bytes()) {
            d.store(b, Relaxed);
        }
        self.len.store(s.len() as u32, Relaxed);
        true
    }
}

pub const FREE: u32 = 0;
pub const ACTIVE: u32 = 1;
/// Removed, but its worker still exists in the balancers: the slot keeps its
/// worker name so that the worker keeps answering 503 instead of being dialled.
pub const REMOVED: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ajp,
    Http,
    Https,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s.to_ascii_lowercase().as_str() {
            "ajp" => Some(Kind::Ajp),
            "http" => Some(Kind::Http),
            "https" => Some(Kind::Https),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ajp => "ajp",
            Kind::Http => "http",
            Kind::Https => "https",
        }
    }
    fn code(self) -> u32 {
        self as u32
    }
    fn from_code(c: u32) -> Kind {
        match c {
            1 => Kind::Http,
            2 => Kind::Https,
            _ => Kind::Ajp,
        }
    }
}

#[repr(C)]
pub struct Slot {
    state: AtomicU32,
    /// Bumped whenever what a child must listen for changes.
    gen: AtomicU32,
    load: AtomicI32,
    kind: AtomicU32,
    port: AtomicU32,
    ports: AtomicU32,
    v6: AtomicU32,
    /// Beside mod_proxy_cluster: the Load of a STATUS that was answered
    /// NOTOK for want of links, plus one (0: none); see `set_pending_load`.
    lift: AtomicI32,
    updated: AtomicI64,
    addr: [AtomicU8; 16],
    route: Text<ROUTE_MAX>,
    balancer: Text<BALANCER_MAX>,
    host: Text<HOST_MAX>,
    apps: Text<APPS_MAX>,
}

/// What one registered node is, as read from the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub state: u32,
    pub gen: u32,
    pub route: String,
    pub balancer: String,
    /// Host as the CONFIG gave it (for INFO/DUMP); `addr` is what is bound.
    pub host: String,
    pub addr: IpAddr,
    pub port: u16,
    pub ports: u16,
    pub kind: Kind,
    pub load: i32,
    pub apps: Apps,
}

impl Entry {
    pub fn worker_url(&self) -> String {
        match self.addr {
            IpAddr::V6(a) => format!("{}://[{a}]:{}", self.kind.as_str(), self.port),
            IpAddr::V4(a) => format!("{}://{a}:{}", self.kind.as_str(), self.port),
        }
    }
    pub fn last_port(&self) -> u16 {
        self.port.saturating_add(self.ports.saturating_sub(1))
    }
    /// Whether two registrations listen on the same thing.
    fn same_listener(&self, o: &Entry) -> bool {
        self.route == o.route
            && self.addr == o.addr
            && self.port == o.port
            && self.ports == o.ports
            && self.kind == o.kind
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppState {
    Enabled,
    Disabled,
    Stopped,
}

impl AppState {
    pub fn as_str(self) -> &'static str {
        match self {
            AppState::Enabled => "ENABLED",
            AppState::Disabled => "DISABLED",
            AppState::Stopped => "STOPPED",
        }
    }
    fn code(self) -> char {
        match self {
            AppState::Enabled => 'E',
            AppState::Disabled => 'D',
            AppState::Stopped => 'S',
        }
    }
    fn from_code(c: char) -> Option<AppState> {
        match c {
            'E' => Some(AppState::Enabled),
            'D' => Some(AppState::Disabled),
            'S' => Some(AppState::Stopped),
            _ => None,
        }
    }
}

/// The contexts of a node: one line per context, `<state> <aliases> <context>`
/// (aliases comma-separated). MCMP has already refused the characters that
/// could break this format (spaces are allowed in neither field).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Apps {
    pub list: Vec<(AppState, Vec<String>, String)>,
}

impl Apps {
    pub fn encode(&self) -> String {
        let mut s = String::new();
        for (st, aliases, ctx) in &self.list {
            s.push(st.code());
            s.push(' ');
            s.push_str(&aliases.join(","));
            s.push(' ');
            s.push_str(ctx);
            s.push('\n');
        }
        s
    }

    pub fn decode(s: &str) -> Apps {
        let mut list = Vec::new();
        for line in s.lines() {
            let mut it = line.splitn(3, ' ');
            let (Some(st), Some(al), Some(ctx)) = (it.next(), it.next(), it.next()) else { continue };
            let Some(st) = st.chars().next().and_then(AppState::from_code) else { continue };
            let aliases = al.split(',').filter(|a| !a.is_empty()).map(str::to_string).collect();
            list.push((st, aliases, ctx.to_string()));
        }
        Apps { list }
    }

    /// Sets the state of these contexts (adding them), under these aliases.
    pub fn set(&mut self, aliases: &[String], contexts: &[String], state: AppState) {
        for c in contexts {
            match self.list.iter_mut().find(|(_, _, x)| x == c) {
                Some(e) => {
                    e.0 = state;
                    for a in aliases {
                        if !e.1.contains(a) {
                            e.1.push(a.clone());
                        }
                    }
                }
                None => self.list.push((state, aliases.to_vec(), c.clone())),
            }
        }
    }

    pub fn set_all(&mut self, state: AppState) {
        for e in &mut self.list {
            e.0 = state;
        }
    }

    pub fn remove(&mut self, contexts: &[String]) {
        self.list.retain(|(_, _, c)| !contexts.contains(c));
    }
}

crate::zero_shareable!(Slot);
crate::zero_shareable!(Header);

/// What changes whenever any slot changes: what the shim's per-worker cache
/// of "which node is this worker" is keyed on.
#[repr(C)]
pub struct Header {
    gen: AtomicU32,
    _pad: AtomicU32,
}

pub struct Registry {
    /// Serialises writers and multi-field readers in every process: a robust
    /// process-shared mutex, so a process that dies holding it (kill -9 of a
    /// child in the MCMP handler) cannot block the others.
    lock: RobustMutex,
    header: SharedArray<Header>,
    slots: SharedArray<Slot>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// The same JVMRoute is registered with another address, port or type.
    Exists,
    /// Its ports overlap those of another registered node.
    Overlaps(String),
    Full,
    TooLong(&'static str),
}

/// What `register` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Registered {
    New(usize),
    /// Already registered as is: nothing changed for the listeners.
    Same(usize),
}

impl Registry {
    pub fn new(slots: usize) -> std::io::Result<Registry> {
        Ok(Registry { lock: RobustMutex::new()?, header: SharedArray::new(1)?, slots: SharedArray::new(slots)? })
    }

    pub fn len(&self) -> usize {
        self.slots.get().len()
    }

    fn lock(&self) -> crate::os::RobustGuard<'_> {
        self.lock.lock()
    }

    fn read_slot(s: &Slot) -> Entry {
        let v6 = s.v6.load(Relaxed) != 0;
        let a: Vec<u8> = s.addr.iter().map(|b| b.load(Relaxed)).collect();
        let addr = if v6 {
            let mut o = [0u8; 16];
            o.copy_from_slice(&a);
            IpAddr::V6(Ipv6Addr::from(o))
        } else {
            IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        };
        Entry {
            state: s.state.load(Relaxed),
            gen: s.gen.load(Relaxed),
            route: s.route.get(),
            balancer: s.balancer.get(),
            host: s.host.get(),
            addr,
            port: s.port.load(Relaxed) as u16,
            ports: s.ports.load(Relaxed) as u16,
            kind: Kind::from_code(s.kind.load(Relaxed)),
            load: s.load.load(Relaxed),
            apps: Apps::decode(&s.apps.get()),
        }
    }

    /// Whether `e` fits a slot; checked before anything is written, so that a
    /// refused CONFIG leaves an active node's slot as it was.
    fn check_fits(e: &Entry) -> Result<(), RegisterError> {
        if !Text::<ROUTE_MAX>::fits(&e.route) {
            return Err(RegisterError::TooLong("JVMRoute"));
        }
        if !Text::<BALANCER_MAX>::fits(&e.balancer) {
            return Err(RegisterError::TooLong("Balancer"));
        }
        if !Text::<HOST_MAX>::fits(&e.host) {
            return Err(RegisterError::TooLong("Host"));
        }
        if !Text::<APPS_MAX>::fits(&e.apps.encode()) {
            return Err(RegisterError::TooLong("contexts"));
        }
        Ok(())
    }

    fn write_slot(s: &Slot, e: &Entry) -> Result<(), RegisterError> {
        Self::check_fits(e)?;
        s.route.set(&e.route);
        s.balancer.set(&e.balancer);
        s.host.set(&e.host);
        s.apps.set(&e.apps.encode());
        let bytes: Vec<u8> = match e.addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        for (d, b) in s.addr.iter().zip(bytes.iter().chain(std::iter::repeat(&0))) {
            d.store(*b, Relaxed);
        }
        s.v6.store(e.addr.is_ipv6() as u32, Relaxed);
        s.port.store(e.port as u32, Relaxed);
        s.ports.store(e.ports as u32, Relaxed);
        s.kind.store(e.kind.code(), Relaxed);
        s.load.store(e.load, Relaxed);
        Ok(())
    }

    /// Every slot that is not free, with its index.
    pub fn entries(&self) -> Vec<(usize, Entry)> {
        let _g = self.lock();
        self.slots
            .get()
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state.load(Relaxed) != FREE)
            .map(|(i, s)| (i, Self::read_slot(s)))
            .collect()
    }

    /// Changes whenever any slot's generation does.
    pub fn gen(&self) -> u32 {
        self.header.get()[0].gen.load(Acquire)
    }

    fn bump(&self, s: &Slot) {
        s.gen.fetch_add(1, Release);
        self.header.get()[0].gen.fetch_add(1, Release);
    }

    /// The generation of every slot (cheap: what accept threads poll).
    pub fn gens(&self) -> Vec<u32> {
        self.slots.get().iter().map(|s| s.gen.load(Acquire)).collect()
    }

    pub fn get(&self, i: usize) -> Option<Entry> {
        let _g = self.lock();
        let s = self.slots.get().get(i)?;
        (s.state.load(Relaxed) != FREE).then(|| Self::read_slot(s))
    }

    pub fn find_route(&self, route: &str) -> Option<(usize, Entry)> {
        self.entries().into_iter().find(|(_, e)| e.state == ACTIVE && e.route == route)
    }

    /// Registers (or confirms) a node. A removed node of the same route
    /// gets its slot back; otherwise a free slot, else the oldest removed one.
    pub fn register(&self, mut e: Entry) -> Result<Registered, RegisterError> {
        let _g = self.lock();
        let slots = self.slots.get();
        let all: Vec<Entry> = slots.iter().map(Self::read_slot).collect();
        for (i, o) in all.iter().enumerate() {
            if o.state != ACTIVE {
                continue;
            }
            if o.route == e.route {
                if o.same_listener(&e) {
                    // Repeated CONFIG: keep contexts and load, refresh the rest.
                    e.apps = merge_apps(&o.apps, &e.apps);
                    e.load = o.load;
                    Self::write_slot(&slots[i], &e)?;
                    return Ok(Registered::Same(i));
                }
                return Err(RegisterError::Exists);
            }
            let overlap = (o.addr == e.addr || o.addr.is_unspecified() || e.addr.is_unspecified())
                && o.port <= e.last_port()
                && e.port <= o.last_port();
            if overlap {
                return Err(RegisterError::Overlaps(o.route.clone()));
            }
        }
        let pick = all
            .iter()
            .position(|o| o.state == REMOVED && o.route == e.route && o.worker_url() == e.worker_url())
            .or_else(|| all.iter().position(|o| o.state == FREE))
            .or_else(|| all.iter().position(|o| o.state == REMOVED))
            .ok_or(RegisterError::Full)?;
        let s = &slots[pick];
        Self::write_slot(s, &e)?;
        s.lift.store(0, Relaxed);
        s.state.store(ACTIVE, Relaxed);
        self.bump(s);
        Ok(Registered::New(pick))
    }

    /// Undoes a registration whose balancer member could not be made.
    pub fn forget(&self, i: usize) {
        let _g = self.lock();
        if let Some(s) = self.slots.get().get(i) {
            s.state.store(FREE, Relaxed);
            self.bump(s);
        }
    }

    /// Removes a node: its listeners close in every child; its worker stays known.
    pub fn remove(&self, i: usize) {
        let _g = self.lock();
        if let Some(s) = self.slots.get().get(i) {
            s.state.store(REMOVED, Relaxed);
            s.lift.store(0, Relaxed);
            s.apps.set("");
            self.bump(s);
        }
    }

    /// Changes the contexts (and nothing that affects listeners).
    pub fn update_apps(&self, i: usize, f: impl FnOnce(&mut Apps)) -> Result<Apps, RegisterError> {
        let _g = self.lock();
        let s = self.slots.get().get(i).ok_or(RegisterError::Full)?;
        let mut apps = Apps::decode(&s.apps.get());
        f(&mut apps);
        if !s.apps.set(&apps.encode()) {
            return Err(RegisterError::TooLong("contexts"));
        }
        Ok(apps)
    }

    pub fn set_load(&self, i: usize, load: i32) {
        if let Some(s) = self.slots.get().get(i) {
            s.load.store(load, Relaxed);
        }
    }
}

// --- Registrations across a restart -------------------------------------
//
// The table is an anonymous mapping of one generation: a graceful restart
// makes a new one. Before the parent lets the old generation go (pconf
// cleanup) it writes the active registrations as text (`snapshot`), the shim
// keeps that text in httpd's retained data (which outlives the reloaded DSO),
// and the next generation reads it back (`parse_snapshot`) and fills its
// new table (`restore`). Removed nodes are not written: they stay removed.

/// The active registrations as one JSON document (slot index included).
pub fn snapshot_text(entries: &[(usize, Entry)]) -> String {
    let list: Vec<serde_json::Value> = entries
        .iter()
        .filter(|(_, e)| e.state == ACTIVE)
        .map(|(i, e)| {
            serde_json::json!({
                "slot": i,
                "route": e.route,
                "balancer": e.balancer,
                "host": e.host,
                "addr": e.addr.to_string(),
                "port": e.port,
                "ports": e.ports,
                "kind": e.kind.as_str(),
                "load": e.load,
                "apps": e.apps.encode(),
            })
        })
        .collect();
    serde_json::json!({ "version": 1, "nodes": list }).to_string()
}

/// Reads `snapshot_text` back; an entry that does not parse is skipped (and
/// named in the second list, for the log).
pub fn parse_snapshot(text: &str) -> (Vec<(usize, Entry)>, Vec<String>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(text) else {
        return (out, vec!["the saved registrations are not readable".into()]);
    };
    if doc["version"].as_u64() != Some(1) {
        return (out, vec![format!("saved registrations of unknown version {}", doc["version"])]);
    }
    for n in doc["nodes"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let s = |k: &str| n[k].as_str().map(str::to_string);
        let u = |k: &str| n[k].as_u64();
        let e = (|| {
            Some((
                u("slot")? as usize,
                Entry {
                    state: ACTIVE,
                    gen: 0,
                    route: s("route")?,
                    balancer: s("balancer")?,
                    host: s("host")?,
                    addr: s("addr")?.parse().ok()?,
                    port: u16::try_from(u("port")?).ok()?,
                    ports: u16::try_from(u("ports")?).ok()?,
                    kind: Kind::parse(&s("kind")?)?,
                    load: i32::try_from(n["load"].as_i64()?).ok()?,
                    apps: Apps::decode(&s("apps")?),
                },
            ))
        })();
        match e {
            Some(e) => out.push(e),
            None => bad.push(format!("a saved registration does not parse: {n}")),
        }
    }
    (out, bad)
}

impl Registry {
    /// Fills a new (empty) table with registrations of the previous
    /// generation: each in its old slot when that is free, else the first
    /// free one. Returns the entries that found no slot or do not fit.
    pub fn restore(&self, entries: Vec<(usize, Entry)>) -> Vec<Entry> {
        let _g = self.lock();
        let slots = self.slots.get();
        let mut left = Vec::new();
        let mut later = Vec::new();
        for (i, e) in entries {
            match slots.get(i) {
                Some(s) if s.state.load(Relaxed) == FREE => self.restore_into(s, e, &mut left),
                _ => later.push(e),
            }
        }
        for e in later {
            match slots.iter().find(|s| s.state.load(Relaxed) == FREE) {
                Some(s) => self.restore_into(s, e, &mut left),
                None => left.push(e),
            }
        }
        left
    }

    fn restore_into(&self, s: &Slot, e: Entry, left: &mut Vec<Entry>) {
        if Self::write_slot(s, &e).is_err() {
            left.push(e);
            return;
        }
        s.lift.store(0, Relaxed);
        s.state.store(ACTIVE, Relaxed);
        self.bump(s);
    }
}

/// Beside mod_proxy_cluster, which keeps a node out of its balancer until a
/// STATUS with a Load is accepted: a STATUS refused only because the node had
/// no live link yet leaves its Load here, and the first link applies it.
impl Registry {
    /// Records the Load of a STATUS answered NOTOK for want of links (0..=100),
    /// or forgets it (None: a STATUS was accepted, or said -1).
    pub fn set_pending_load(&self, i: usize, load: Option<i32>) {
        if let Some(s) = self.slots.get().get(i) {
            let v = load.filter(|l| (0..=100).contains(l)).map_or(0, |l| l + 1);
            s.lift.store(v, Release);
        }
    }

    /// Active nodes with a pending Load (cheap: no lock, no strings).
    pub fn pending_loads(&self) -> Vec<(usize, i32)> {
        self.slots
            .get()
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state.load(Acquire) == ACTIVE)
            .filter_map(|(i, s)| match s.lift.load(Acquire) {
                0 => None,
                v => Some((i, v - 1)),
            })
            .collect()
    }

    /// The pending Load was applied: forgets it unless a newer STATUS changed it.
    pub fn pending_load_applied(&self, i: usize, load: i32) {
        if let Some(s) = self.slots.get().get(i) {
            let _ = s.lift.compare_exchange(load + 1, 0, AcqRel, Relaxed);
        }
    }
}

fn merge_apps(old: &Apps, new: &Apps) -> Apps {
    let mut a = old.clone();
    for (st, aliases, ctx) in &new.list {
        if !a.list.iter().any(|(_, _, c)| c == ctx) {
            a.list.push((*st, aliases.clone(), ctx.clone()));
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(route: &str, port: u16) -> Entry {
        Entry {
            state: ACTIVE,
            gen: 0,
            route: route.into(),
            balancer: "mycluster".into(),
            host: "127.0.0.1".into(),
            addr: "127.0.0.1".parse().unwrap(),
            port,
            ports: 4,
            kind: Kind::Ajp,
            load: 0,
            apps: Apps::default(),
        }
    }

    /// A refused CONFIG (here: a Host too long for the table) must not
    /// change an active node: the fields are checked before any is written.
    #[test]
    fn refused_config_changes_nothing() {
        let r = Registry::new(2).unwrap();
        assert_eq!(r.register(entry("a", 9100)), Ok(Registered::New(0)));
        let mut bad = entry("a", 9100);
        bad.balancer = "otherbalancer".into();
        bad.host = "h".repeat(HOST_MAX + 1);
        assert_eq!(r.register(bad), Err(RegisterError::TooLong("Host")));
        let e = r.get(0).unwrap();
        assert_eq!((e.balancer.as_str(), e.host.as_str()), ("mycluster", "127.0.0.1"), "{e:?}");
    }

    #[test]
    fn register_confirm_conflict_remove_reuse() {
        let r = Registry::new(2).unwrap();
        assert_eq!(r.register(entry("a", 9100)), Ok(Registered::New(0)));
        let g = r.gens()[0];
        assert_eq!(r.register(entry("a", 9100)), Ok(Registered::Same(0)));
        assert_eq!(r.gens()[0], g, "a repeated CONFIG must not disturb the listeners");
        assert_eq!(r.register(entry("a", 9200)), Err(RegisterError::Exists));
        assert_eq!(r.register(entry("b", 9103)), Err(RegisterError::Overlaps("a".into())));
        assert_eq!(r.register(entry("b", 9104)), Ok(Registered::New(1)));
        assert_eq!(r.register(entry("c", 9300)), Err(RegisterError::Full));
        r.remove(0);
        assert!(r.gens()[0] > g);
        assert_eq!(r.find_route("a"), None);
        assert_eq!(r.get(0).unwrap().worker_url(), "ajp://127.0.0.1:9100");
        // The removed slot is reused: first by the same node, else by another.
        assert_eq!(r.register(entry("c", 9300)), Ok(Registered::New(0)));
        assert_eq!(r.find_route("c").unwrap().0, 0);
    }

    #[test]
    fn apps_round_trip_and_states() {
        let r = Registry::new(1).unwrap();
        r.register(entry("a", 9100)).unwrap();
        let al = vec!["localhost".to_string(), "example.com".to_string()];
        r.update_apps(0, |a| a.set(&al, &["/app".into(), "/x".into()], AppState::Enabled)).unwrap();
        r.update_apps(0, |a| a.set(&al, &["/x".into()], AppState::Stopped)).unwrap();
        let e = r.get(0).unwrap();
        assert_eq!(e.apps.list.len(), 2);
        assert_eq!(e.apps.list[1], (AppState::Stopped, al.clone(), "/x".to_string()));
        r.update_apps(0, |a| a.remove(&["/app".into()])).unwrap();
        assert_eq!(r.get(0).unwrap().apps.list.len(), 1);
        let huge: Vec<String> = (0..40).map(|i| format!("/{}{i}", "c".repeat(70))).collect();
        assert_eq!(r.update_apps(0, |a| a.set(&al, &huge, AppState::Enabled)), Err(RegisterError::TooLong("contexts")));
    }

    #[test]
    fn pending_load_is_kept_until_applied_and_reset_by_a_new_registration() {
        let r = Registry::new(2).unwrap();
        r.register(entry("a", 9100)).unwrap();
        assert!(r.pending_loads().is_empty());
        r.set_pending_load(0, Some(0));
        assert_eq!(r.pending_loads(), vec![(0, 0)], "Load 0 (standby) is a Load too");
        r.set_pending_load(0, Some(75));
        r.pending_load_applied(0, 0);
        assert_eq!(r.pending_loads(), vec![(0, 75)], "a newer STATUS is not lost");
        r.pending_load_applied(0, 75);
        assert!(r.pending_loads().is_empty());
        r.set_pending_load(0, Some(-1));
        assert!(r.pending_loads().is_empty(), "-1 is no Load to apply");
        r.set_pending_load(0, Some(20));
        r.remove(0);
        assert!(r.pending_loads().is_empty(), "a removed node");
        r.register(entry("a", 9100)).unwrap();
        assert!(r.pending_loads().is_empty(), "a new registration starts without one");
    }

    #[test]
    fn ipv6_and_urls() {
        let r = Registry::new(1).unwrap();
        let mut e = entry("v6", 9100);
        e.addr = "::1".parse().unwrap();
        e.kind = Kind::Http;
        r.register(e).unwrap();
        assert_eq!(r.get(0).unwrap().worker_url(), "http://[::1]:9100");
    }

    #[test]
    fn snapshot_round_trip_keeps_active_drops_removed() {
        let r = Registry::new(3).unwrap();
        r.register(entry("a", 9100)).unwrap();
        r.register(entry("b", 9104)).unwrap();
        let mut v6 = entry("c", 9108);
        v6.addr = "::1".parse().unwrap();
        v6.kind = Kind::Http;
        r.register(v6).unwrap();
        let al = vec!["localhost".to_string()];
        r.update_apps(1, |a| a.set(&al, &["/app".into()], AppState::Enabled)).unwrap();
        r.set_load(1, 42);
        r.remove(0);
        let text = snapshot_text(&r.entries());
        let (back, bad) = parse_snapshot(&text);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(back.iter().map(|(i, e)| (*i, e.route.as_str())).collect::<Vec<_>>(), [(1, "b"), (2, "c")]);
        // A new table of another size: slot 1 kept, slot 2 does not exist, so "c" goes to the first free one.
        let n = Registry::new(2).unwrap();
        assert!(n.restore(back).is_empty());
        let b = n.get(1).unwrap();
        assert_eq!((b.load, b.apps.list.len(), b.worker_url()), (42, 1, "ajp://127.0.0.1:9104".to_string()));
        assert_eq!(n.get(0).unwrap().worker_url(), "http://[::1]:9108");
        assert!(n.gen() > 0, "listeners must see the restored slots");
        // Full: what does not fit comes back.
        let (again, _) = parse_snapshot(&text);
        let one = Registry::new(1).unwrap();
        assert_eq!(one.restore(again).len(), 1);
        assert_eq!(parse_snapshot("garbage").1.len(), 1);
        assert_eq!(parse_snapshot("{\"version\":1,\"nodes\":[{\"slot\":0}]}").1.len(), 1);
    }
}
