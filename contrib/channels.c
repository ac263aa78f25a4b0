/* channels.c — a producer/consumer pipeline over remote channels, Julia's
 * jobs/results example: the master feeds job numbers into a `jobs` channel
 * from a thread (Julia's @async make_jobs), every worker takes jobs, works on
 * each for a random time and puts (job, time, worker) into `results`, and
 * the master prints the results as they come.  Closing `jobs` ends the
 * workers' loops.
 *
 *   distc-launch -p 4 ./channels [njobs]                                    */
#include <distc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* do_work(jobs, results): until jobs is closed, take a job, "work" 10 to
 * 100 ms, put [job, ms, myid] into results.  Answers how many it did. */
DISTC_FUNCTION(do_work) {
  const distc_value *jobs = distc_list_at(args, 0);
  const distc_value *results = distc_list_at(args, 1);
  unsigned seed = (unsigned)distc_myid() * 7919u;
  int64_t done = 0;
  for (;;) {
    distc_value *job = NULL;
    int rc = distc_channel_take(jobs, &job);
    if (rc == DISTC_ECLOSED)
      break;
    if (rc < 0)
      return distc_fail(ctx, "take: %s", distc_errmsg());
    int ms = 10 + (int)(rand_r(&seed) % 91);
    usleep((useconds_t)ms * 1000);
    distc_value *r = distc_listv(3, distc_value_ref(job), distc_int(ms),
                                 distc_int(distc_myid()));
    rc = distc_channel_put(results, r);
    distc_value_free(r);
    distc_value_free(job);
    if (rc < 0)
      return distc_fail(ctx, "put: %s", distc_errmsg());
    done++;
  }
  return distc_int(done);
}

typedef struct feed {
  distc_value *jobs;
  int n;
} feed;

/* make_jobs(n): put 1..n into jobs, then close it. */
static void *make_jobs(void *arg) {
  feed *f = arg;
  for (int i = 1; i <= f->n; i++) {
    distc_value *v = distc_int(i);
    if (distc_channel_put(f->jobs, v) < 0)
      fprintf(stderr, "put job %d: %s\n", i, distc_errmsg());
    distc_value_free(v);
  }
  distc_channel_close(f->jobs);
  return NULL;
}

int main(int argc, char **argv) {
  if (distc_init(&argc, &argv) < 0) {
    fprintf(stderr, "distc_init: %s\n", distc_errmsg());
    return 1;
  }
  int n = argc > 1 ? atoi(argv[1]) : 12;
  /* jobs = RemoteChannel(()->Channel{Int}(32)), results likewise, here. */
  distc_value *jobs = NULL, *results = NULL;
  if (distc_channel_new(DISTC_MASTER, 32, &jobs) < 0 ||
      distc_channel_new(DISTC_MASTER, 32, &results) < 0) {
    fprintf(stderr, "channel: %s\n", distc_errmsg());
    return 1;
  }
  double t0 = now_s();
  feed f = {jobs, n};
  pthread_t feeder;
  pthread_create(&feeder, NULL, make_jobs, &f);

  int ids[256], nw = distc_workers(ids, 256);
  nw = nw < 256 ? nw : 256;
  distc_future *fs[256];
  distc_value *a = distc_listv(2, distc_value_ref(jobs),
                               distc_value_ref(results));
  for (int i = 0; i < nw; i++)
    if (distc_remotecall(ids[i], "do_work", a, &fs[i]) < 0) {
      fprintf(stderr, "do_work: %s\n", distc_errmsg());
      return 1;
    }
  distc_value_free(a);

  int per[256] = {0};
  for (int left = n; left > 0; left--) {
    distc_value *r = NULL;
    if (distc_channel_take(results, &r) < 0) {
      fprintf(stderr, "take result: %s\n", distc_errmsg());
      return 1;
    }
    long long job = (long long)distc_value_int(distc_list_at(r, 0));
    long long ms = (long long)distc_value_int(distc_list_at(r, 1));
    int where = (int)distc_value_int(distc_list_at(r, 2));
    printf("%lld finished in %.2f seconds on worker %d\n", job, ms / 1000.0,
           where);
    for (int i = 0; i < nw; i++)
      per[i] += ids[i] == where;
    distc_value_free(r);
  }
  double took = now_s() - t0;
  pthread_join(feeder, NULL);
  int total = 0;
  for (int i = 0; i < nw; i++) {
    distc_value *v = NULL;
    if (distc_fetch(fs[i], &v) == 0)
      total += (int)distc_value_int(v);
    else
      fprintf(stderr, "worker %d: %s\n", ids[i], distc_errmsg());
    printf("worker %d did %d jobs\n", ids[i], per[i]);
    distc_value_free(v);
    distc_future_free(fs[i]);
  }
  printf("%d jobs in %.2f s; the workers report %d\n", n, took, total);
  distc_channel_free(jobs);
  distc_channel_free(results);
  distc_finalize();
  return total == n ? 0 : 1;
}
