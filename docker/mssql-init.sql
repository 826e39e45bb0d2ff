-- Creates the report database (sqlcmd variable DB_NAME); idempotent. The report tables are
-- created by the DAG's load step (include/cdr_reports/load.py).
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
SELECT name, is_read_committed_snapshot_on FROM sys.databases WHERE name = N'$(DB_NAME)';
GO
