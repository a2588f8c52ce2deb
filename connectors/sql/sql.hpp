#pragma once
// The SQL connector (name "sql"): PowerFlow's MySQL and MS-SQL Base Steps
// plus generic SQLSelect/SQLInsert/SQLDescribe over MySQL/MariaDB,
// PostgreSQL, SQLite and ODBC. It owns a blocking_pool for the client
// libraries and one bounded connection pool per distinct target.
// Documented in docs/connectors/sql.md.
#include <memory>

#include "stepflow/connectors/connector.hpp"

namespace stepflow::connectors {

/// Options (the "sql" member of the connectors options file), validated
/// once here; errors name the field ("sql.pool_size: ..."):
/// - pool_size: most open connections per target, integer 1..1000 (default 4);
/// - threads: threads of the connector's blocking pool, integer 1..256 (default 8);
/// - idle_timeout: seconds an unused connection stays open, > 0 (default 300).
caf::expected<std::shared_ptr<connector>> make_sql_connector(const connector_setup& setup);

} // namespace stepflow::connectors
