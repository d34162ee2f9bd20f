-- One database and one least-privilege account per MeshMart service.
--
-- The mysql image runs this once, as root, when its data volume is new
-- (/docker-entrypoint-initdb.d). Each service gets the rights its migrations
-- and its queries need on its own database, and nothing anywhere else: no
-- global privileges, no GRANT OPTION, no access to another service's data.
-- tests/deploy/test_mysql_init.py runs this file against the test suite's
-- MariaDB and proves all of that.
--
-- The passwords are the compose stack's development defaults (the database
-- is reachable only on the compose network). docker-compose.yml's
-- DATABASE_URLs carry the same ones; change both together.

CREATE DATABASE IF NOT EXISTS `meshmart_user` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE DATABASE IF NOT EXISTS `meshmart_product` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE DATABASE IF NOT EXISTS `meshmart_order` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE DATABASE IF NOT EXISTS `meshmart_trade` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE DATABASE IF NOT EXISTS `meshmart_data` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE USER IF NOT EXISTS 'meshmart_user'@'%' IDENTIFIED BY 'user-dev-password';
CREATE USER IF NOT EXISTS 'meshmart_product'@'%' IDENTIFIED BY 'product-dev-password';
CREATE USER IF NOT EXISTS 'meshmart_order'@'%' IDENTIFIED BY 'order-dev-password';
CREATE USER IF NOT EXISTS 'meshmart_trade'@'%' IDENTIFIED BY 'trade-dev-password';
CREATE USER IF NOT EXISTS 'meshmart_data'@'%' IDENTIFIED BY 'data-dev-password';

-- Data (SELECT, INSERT, UPDATE, DELETE) and schema (CREATE, ALTER, DROP, INDEX,
-- REFERENCES) on the service's own database: Alembic migrations and queries.
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, DROP, INDEX, REFERENCES
    ON `meshmart_user`.* TO 'meshmart_user'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, DROP, INDEX, REFERENCES
    ON `meshmart_product`.* TO 'meshmart_product'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, DROP, INDEX, REFERENCES
    ON `meshmart_order`.* TO 'meshmart_order'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, DROP, INDEX, REFERENCES
    ON `meshmart_trade`.* TO 'meshmart_trade'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, DROP, INDEX, REFERENCES
    ON `meshmart_data`.* TO 'meshmart_data'@'%';
