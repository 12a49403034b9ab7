//! The `process_definitions` and `process_instances` tables.

pub mod definition {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "process_definitions")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub name: String,
        pub description: Option<String>,
        pub steps: Json,
        /// Its saver's authority (`hookbus_core::Delegation` as JSON text); `None` when saved
        /// before authority was recorded.
        pub run_as: Option<String>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod instance {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "process_instances")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub definition_id: i32,
        pub status: crate::ProcessStatus,
        pub execution_mode: String,
        /// The runtime context plus each finished step's output under its name.
        pub variables: Json,
        /// The index of the next step to run.
        pub current_step: i32,
        pub step_log: Json,
        pub error: Option<String>,
        pub lease_until: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub completed_at: Option<DateTimeUtc>,
        /// The authority its steps run with: its definition's, narrowed by its starter's.
        pub run_as: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
