-- One PostgreSQL server, one database per service (they never read each other's tables).
CREATE DATABASE coordinator OWNER aitbc;
CREATE DATABASE poolhub OWNER aitbc;
CREATE DATABASE exchange OWNER aitbc;
