//! The database schema: migrations go up, down and up again to the same schema, and
//! `db/src/schema.rs` matches the migrated database.

use std::fmt::Write as _;

use outpost_db::testing::TestDatabase;

const SCHEMA_RS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../db/src/schema.rs");

/// Maps a PostgreSQL column type to its diesel SQL type.
fn diesel_type(udt: &str) -> String {
    match udt {
        "uuid" => "Uuid".into(),
        "text" => "Text".into(),
        "bool" => "Bool".into(),
        "int4" => "Int4".into(),
        "int8" => "Int8".into(),
        "timestamptz" => "Timestamptz".into(),
        "jsonb" => "Jsonb".into(),
        "date" => "Date".into(),
        "bytea" => "Bytea".into(),
        array if array.starts_with('_') => format!("Array<{}>", diesel_type(&array[1..])),
        other => panic!("no diesel mapping for column type {other}: extend diesel_type()"),
    }
}

/// Renders the `table!` definitions of every table, like `diesel print-schema`.
async fn render_schema(url: &str) -> String {
    let client = outpost_db::embedded::maintenance_client(url).await.unwrap();
    let columns = client
        .query(
            "SELECT c.table_name::text, c.column_name::text, c.udt_name::text, c.is_nullable = 'YES'
             FROM information_schema.columns c
             JOIN information_schema.tables t USING (table_schema, table_name)
             WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
               AND c.table_name NOT LIKE '\\_\\_diesel%'
             ORDER BY c.table_name, c.ordinal_position",
            &[],
        )
        .await
        .unwrap();
    let keys = client
        .query(
            "SELECT tc.table_name::text, kcu.column_name::text
             FROM information_schema.table_constraints tc
             JOIN information_schema.key_column_usage kcu
               ON kcu.constraint_name = tc.constraint_name AND kcu.table_schema = tc.table_schema
             WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = 'public'
             ORDER BY tc.table_name, kcu.ordinal_position",
            &[],
        )
        .await
        .unwrap();

    let mut tables: Vec<String> = columns.iter().map(|r| r.get::<_, String>(0)).collect();
    tables.dedup();
    let mut out = String::from(
        "// @generated from the migrated database by the schema test of the integration suite:\n\
         // `UPDATE_SCHEMA=1 ./scripts/test schema` rewrites it. Do not edit by hand.\n\
         //! The diesel schema of Outpost's tables.\n\n",
    );
    for table in &tables {
        let pk: Vec<String> = keys
            .iter()
            .filter(|r| r.get::<_, String>(0) == *table)
            .map(|r| r.get::<_, String>(1))
            .collect();
        writeln!(out, "diesel::table! {{\n    {table} ({}) {{", pk.join(", ")).unwrap();
        for row in columns.iter().filter(|r| r.get::<_, String>(0) == *table) {
            let name: String = row.get(1);
            let ty = diesel_type(&row.get::<_, String>(2));
            let ty = if row.get::<_, bool>(3) {
                format!("Nullable<{ty}>")
            } else {
                ty
            };
            writeln!(out, "        {name} -> {ty},").unwrap();
        }
        out.push_str("    }\n}\n\n");
    }
    out.push_str("diesel::allow_tables_to_appear_in_same_query!(\n");
    for table in &tables {
        writeln!(out, "    {table},").unwrap();
    }
    out.push_str(");\n");
    out
}

#[tokio::test]
async fn schema_rs_matches_the_migrations() {
    let db = TestDatabase::create().await.unwrap();
    let rendered = render_schema(db.url()).await;
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(SCHEMA_RS, &rendered).unwrap();
    }
    let current = std::fs::read_to_string(SCHEMA_RS).unwrap();
    assert!(
        current == rendered,
        "db/src/schema.rs is out of date with migrations/: run `UPDATE_SCHEMA=1 ./scripts/test schema`"
    );
}

/// `pg_dump --schema-only` of a database, for comparing schemas.
fn dump_schema(db: &TestDatabase) -> String {
    let program = db.program("pg_dump").unwrap_or_else(|| "pg_dump".into());
    let output = std::process::Command::new(program)
        .args([
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "-d",
            db.url(),
        ])
        .output()
        .expect("pg_dump");
    assert!(
        output.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // `\restrict` lines carry a random key per dump (pg_dump 15.14+); they are not schema.
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with("\\restrict") && !line.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn every_migration_goes_down_and_up_again_to_the_same_schema() {
    let db = TestDatabase::create_empty().await.unwrap();
    let applied = outpost_db::migrations::run_pending(db.url()).await.unwrap();
    assert!(!applied.is_empty());
    let first = dump_schema(&db);
    assert!(first.contains("CREATE TABLE public.rum_reports"));

    let reverted = outpost_db::migrations::revert_all(db.url()).await.unwrap();
    assert_eq!(reverted.len(), applied.len());
    let client = outpost_db::embedded::maintenance_client(db.url())
        .await
        .unwrap();
    let tables: i64 = client
        .query_one("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE '\\_\\_diesel%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "down.sql leaves no table behind");

    outpost_db::migrations::run_pending(db.url()).await.unwrap();
    let second = dump_schema(&db);
    let difference = first.lines().zip(second.lines()).find(|(a, b)| a != b);
    assert!(
        first == second,
        "up, down, up gives another schema; first difference: {difference:?}"
    );
    assert!(
        outpost_db::migrations::pending(db.url())
            .await
            .unwrap()
            .is_empty()
    );
}
