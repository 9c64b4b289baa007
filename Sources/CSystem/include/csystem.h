#ifndef CSYSTEM_H
#define CSYSTEM_H
/* What Glibc does not import into Swift: filled in by the layers that need it. */
int csystem_placeholder(void);
#endif
