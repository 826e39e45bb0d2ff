// One-shot (compose service `mongo-init`, `mongosh --nodb --file`): the read-only MongoDB user of
// the report DAGs, as the root user. Idempotent: creates the user, or resets its password and
// roles to what .env says. Credentials come from the environment, never from a command line.
//
// Least privilege (docs/security.md): the Airflow connection cdr_mongo logs in as this user, whose
// only role is `read` on the CDR database. The root user is used by init steps only (this one and
// mongo-seed).
const env = process.env;
const required = (name) => {
  if (!env[name]) {
    throw new Error(`set ${name} in .env`);
  }
  return env[name];
};
const conn = new Mongo(`mongodb://${env.MONGO_HOST || "mongo"}:27017/?authSource=admin`);
const admin = conn.getDB("admin");
admin.auth(required("MONGO_ROOT_USERNAME"), required("MONGO_ROOT_PASSWORD"));
const user = required("MONGO_REPORTS_USERNAME");
const database = required("CDR_MONGO_DB");
const roles = [{ role: "read", db: database }];
if (admin.getUser(user) === null) {
  admin.createUser({ user: user, pwd: required("MONGO_REPORTS_PASSWORD"), roles: roles });
  print(`[mongo-init] created user ${user}: read on ${database}`);
} else {
  admin.updateUser(user, { pwd: required("MONGO_REPORTS_PASSWORD"), roles: roles });
  print(`[mongo-init] updated user ${user}: read on ${database} only`);
}
