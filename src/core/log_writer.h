/* log_writer.h: log output that never makes a worker wait (issue 11 section 4).
 *
 * Every thread that logs hands whole lines to a bounded single-producer ring of its own (workers) or
 * to one shared, mutex-guarded ring (the main thread and any other thread); one writer thread drains
 * the rings into the sinks. A pipe, tty or socket sink is written without blocking: when it is full
 * the writer waits for it, the rings fill up, and further lines are dropped and counted, never waited
 * for. A regular file is written with plain write(2) from the writer thread. A line is queued whole
 * or not at all and written by one thread, so lines never tear or interleave.
 *
 * Before log_writer_start() (start-up, --check) and after log_writer_stop() lines are written at
 * once by the caller: start-up errors are printed even if the process exits right after. */
#ifndef JWTGATE_LOG_WRITER_H
#define JWTGATE_LOG_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_stream {
	LOG_STREAM_PROCESS = 0, /* the error log (log.h), always stderr */
	LOG_STREAM_ACCESS,      /* the access log (accessLog.path) */
	LOG_STREAM_COUNT,
};

#define LOG_WRITER_LINE_MAX     8192         /* a longer line is cut (its newline kept) */
#define LOG_WRITER_RING_MIN     (16 * 1024)  /* accessLog.bufferSize bounds */
#define LOG_WRITER_RING_MAX     (64u << 20)  /* */
#define LOG_WRITER_RING_DEFAULT (256 * 1024) /* per worker, access log */

/* Opens the access log sink: "stdout", "stderr" or a file path (created 0640, appended to).
 * Start-up tier, before log_writer_start(). Returns 0 or -errno. */
int log_writer_open_access(const char *path);

/* True when an access log sink is open. */
bool log_writer_has_access(void);

/* Creates one ring per stream for each of n_slots worker threads (access rings of access_ring bytes,
 * rounded up to a power of two), one shared ring per stream for every other thread, and starts the
 * writer thread. From then on lines are queued. Returns 0 or -errno (lines stay synchronous). */
int log_writer_start(int n_slots, size_t access_ring);

/* Binds the calling thread to worker slot `slot` (its own rings); call first thing in the thread. */
void log_writer_attach(int slot);

/* Queues one whole line, newline included. Never blocks once started: returns false when the line
 * was dropped (its ring is full, or the sink failed), and the drop is counted. */
bool log_writer_put(enum log_stream s, const char *line, size_t len);

/* Thread-safe (SIGUSR1 on the main loop): the writer reopens a file sink by its path, so that a
 * rotated file is let go and new lines go to a new file. stdout and stderr are left alone. */
void log_writer_reopen(void);

/* Stops the writer: what is queued is written for at most bound_ms (a blocked sink is not waited
 * for longer), the rest is counted as dropped; then the thread is joined. Call after every other
 * logging thread has ended (the workers are joined); later lines are written at once, each with a
 * short bound when the sink is a pipe. */
void log_writer_stop(uint64_t bound_ms);

/* Closes the sinks (end of main). */
void log_writer_close(void);

/* Lines dropped so far on a stream, summed over the threads (each counts in its own ring, read
 * here without a lock: the admin endpoint's /metrics). */
uint64_t log_writer_dropped(enum log_stream s);

#endif
