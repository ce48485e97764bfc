/* Live migration of a running VM to another ember, on the VMM thread's
 * event loop (the stream's format: stream.h).
 *
 * The source (PUT /ember/migration) connects to the destination, sends all
 * of guest memory while the VM runs, then in rounds the pages written
 * since the round before (KVM's dirty log and ember's own writes, so the
 * VM needs track_dirty_pages), until the pages left would take no longer
 * than downtime_ms to send at the rate the rounds measured. It then
 * pauses the VM, waits for the devices' in-flight I/O, sends the last
 * pages and the state (a snapshot state file image) and waits for the
 * destination's answer. Until the END message is out, any failure (the
 * destination gone, a cancel, timeout_s passed without converging)
 * resumes the VM as it was; after it, the VM stays paused unless the
 * destination answers that it failed, since the destination may be
 * running it.
 *
 * The destination (ember --migration-listen ADDRESS) accepts one
 * connection, builds the VM from the BEGIN message's configuration as a
 * snapshot load would, writes the pages into its RAM, applies the state
 * and resumes; then answers. A failure answers the source with the reason
 * and ends the process with status 1, as a failed snapshot load does. */
#ifndef EMBER_MIGRATION_H
#define EMBER_MIGRATION_H

#include <stdbool.h>
#include <stdint.h>

#include "../config.h"

struct action;
struct controller;

enum migrate_mode { MIGRATE_PRECOPY, MIGRATE_POSTCOPY, MIGRATE_AUTO };

#define MIGRATE_DEFAULT_DOWNTIME_MS 300u
#define MIGRATE_DEFAULT_TIMEOUT_S 600u
#define MIGRATE_MAX_DOWNTIME_MS 60000u
#define MIGRATE_MAX_TIMEOUT_S 86400u

/* PUT /ember/migration */
struct migrate_request {
	char destination[256];    /* unix:PATH or tcp:HOST:PORT */
	enum migrate_mode mode;
	uint32_t downtime_ms;
	uint32_t timeout_s;
};

/* PUT /ember/migration: start migrating this VM (answers once connected
 * and under way, or with the reason it cannot start). */
void migration_start(struct controller *c, struct action *a);
/* GET /ember/migration: its progress as JSON. */
void migration_get(struct controller *c, struct action *a);
/* DELETE /ember/migration: stop it, the VM running on here. */
void migration_cancel(struct controller *c, struct action *a);
/* A migration holds the VM: pausing, resuming and snapshots must wait.
 * Returns true and sets a's 400 reply with why. */
bool migration_refuses(struct controller *c, struct action *a);

/* ember --migration-listen: wait for a source on the listening socket
 * listen_fd (unlink_path: its socket file, removed once a source came, or
 * NULL). Returns 0 or -errno. */
int migration_listen(struct controller *c, int listen_fd, const char *unlink_path);

#endif
