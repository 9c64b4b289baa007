#ifndef CSYSTEM_AFFINITY_H
#define CSYSTEM_AFFINITY_H
/* CPU affinity (sched_setaffinity and the CPU_SET macros are _GNU_SOURCE-only).
 * Children started afterwards inherit the mask. Return 0 or -1 with errno set. */
int csystem_pin_to_cpu(int cpu);
/* Allow every online CPU again. */
int csystem_unpin(void);
/* Number of CPUs in the current affinity mask, or -1. */
int csystem_allowed_cpus(void);
#endif
