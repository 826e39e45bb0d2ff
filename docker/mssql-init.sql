-- One-shot init of the report database on SQL Server, as `sa` (compose service `mssql-init`, which
-- runs after `reports-schema` has created or upgraded the tables). Idempotent. sqlcmd scripting
-- variables come from the environment (docker/mssql-init.sh): DB_NAME, REPORT_SCHEMA,
-- APP_LOGIN, APP_PASSWORD (the password never appears on a command line).
--
-- Least privilege (docs/security.md): the Airflow connection cdr_reports_db logs in as APP_LOGIN,
-- whose only rights are those of the role cdr_report_writer below: SELECT/INSERT/DELETE on the
-- report tables (a load replaces a period: DELETE + INSERT; the report view reads; retention
-- deletes; the quality checks and the source audit replace their findings) and SELECT on the
-- schema version table (a load checks it is at head, then needs no DDL). No UPDATE, no DDL,
-- nothing on other tables or databases. The grants must match
-- REPORT_DB_GRANTS in include/cdr_reports/integration/security.py (tests/unit/test_compose.py).
IF DB_ID(N'$(DB_NAME)') IS NULL
BEGIN
    CREATE DATABASE [$(DB_NAME)];
END
GO
-- Readers see the last committed report while a load replaces a period, instead of waiting.
IF (SELECT is_read_committed_snapshot_on FROM sys.databases WHERE name = N'$(DB_NAME)') = 0
BEGIN
    ALTER DATABASE [$(DB_NAME)] SET READ_COMMITTED_SNAPSHOT ON WITH ROLLBACK IMMEDIATE;
END
GO
-- The DAG's login; .env stays the source of truth for its password.
IF SUSER_ID(N'$(APP_LOGIN)') IS NULL
BEGIN
    CREATE LOGIN [$(APP_LOGIN)] WITH PASSWORD = N'$(APP_PASSWORD)', DEFAULT_DATABASE = [$(DB_NAME)], CHECK_POLICY = ON;
END
ELSE
BEGIN
    ALTER LOGIN [$(APP_LOGIN)] WITH PASSWORD = N'$(APP_PASSWORD)';
END
GO
USE [$(DB_NAME)];
GO
IF DATABASE_PRINCIPAL_ID(N'$(APP_LOGIN)') IS NULL
BEGIN
    CREATE USER [$(APP_LOGIN)] FOR LOGIN [$(APP_LOGIN)] WITH DEFAULT_SCHEMA = [$(REPORT_SCHEMA)];
END
IF DATABASE_PRINCIPAL_ID(N'cdr_report_writer') IS NULL
BEGIN
    CREATE ROLE cdr_report_writer;
END
IF IS_ROLEMEMBER(N'cdr_report_writer', N'$(APP_LOGIN)') = 0
BEGIN
    ALTER ROLE cdr_report_writer ADD MEMBER [$(APP_LOGIN)];
END
GO
GRANT SELECT, INSERT, DELETE ON OBJECT::[$(REPORT_SCHEMA)].[cdr_operator_report] TO cdr_report_writer;
GRANT SELECT, INSERT, DELETE ON OBJECT::[$(REPORT_SCHEMA)].[cdr_report_run] TO cdr_report_writer;
GRANT SELECT, INSERT, DELETE ON OBJECT::[$(REPORT_SCHEMA)].[cdr_quality_check] TO cdr_report_writer;
GRANT SELECT, INSERT, DELETE ON OBJECT::[$(REPORT_SCHEMA)].[cdr_source_audit] TO cdr_report_writer;
GRANT SELECT, INSERT, DELETE ON OBJECT::[$(REPORT_SCHEMA)].[cdr_report_delivery] TO cdr_report_writer;
GRANT SELECT ON OBJECT::[$(REPORT_SCHEMA)].[cdr_reports_schema_version] TO cdr_report_writer;
GO
SELECT name, is_read_committed_snapshot_on FROM sys.databases WHERE name = N'$(DB_NAME)';
GO
