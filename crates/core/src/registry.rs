use std::{collections::HashMap, sync::LazyLock};

use schemars::Schema;

use crate::Permission;

/// A registered command, as listed by `GET /api/bpm/commands`.
#[derive(Debug)]
pub struct CommandInfo {
    pub name: &'static str,
    pub permission: Permission,
    schema: fn() -> Schema,
    answer: fn() -> Schema,
}

impl CommandInfo {
    #[doc(hidden)]
    pub const fn new(
        name: &'static str,
        permission: Permission,
        schema: fn() -> Schema,
        answer: fn() -> Schema,
    ) -> Self {
        Self { name, permission, schema, answer }
    }

    /// The JSON Schema of the command's fields, generated from its Rust type.
    pub fn schema(&self) -> Schema {
        (self.schema)()
    }

    /// The JSON Schema of what a success answers as `data`, generated from the handler's
    /// declared answer type.
    pub fn answer(&self) -> Schema {
        (self.answer)()
    }
}

inventory::collect!(CommandInfo);

static REGISTRY: LazyLock<HashMap<&'static str, &'static CommandInfo>> = LazyLock::new(|| {
    let mut map = HashMap::new();
    for info in inventory::iter::<CommandInfo> {
        if map.insert(info.name, info).is_some() {
            // Two types under one wire name would make dispatch depend on link order.
            panic!("command name {:?} is registered twice", info.name);
        }
    }
    map
});

/// Every registered command, sorted by name.
pub fn catalog() -> Vec<&'static CommandInfo> {
    let mut all: Vec<_> = REGISTRY.values().copied().collect();
    all.sort_by_key(|info| info.name);
    all
}

/// The command registered under `name`, if any.
pub fn lookup(name: &str) -> Option<&'static CommandInfo> {
    REGISTRY.get(name).copied()
}
