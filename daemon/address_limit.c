/*
 * Open connections per client address (see address_limit.h): a table of
 * addresses with their counts, searched linearly under a mutex. It has at
 * most one entry per open connection, CONFIG_MAX_CONNECTIONS in the
 * daemon, so a search is a few hundred comparisons at most.
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "address_limit.h"

struct address_entry {
    int family;          /* AF_INET or AF_INET6; 0 for a free entry */
    unsigned char bytes[16];
    int count;           /* open connections from this address */
};

struct address_limit {
    pthread_mutex_t lock;
    int max_per_address;
    int capacity;
    struct address_entry *entries; /* [capacity] */
};

struct address_limit *address_limit_create(int max_per_address, int capacity)
{
    struct address_limit *limit = calloc(1, sizeof *limit);

    if (!limit)
        return NULL;
    limit->entries = calloc((size_t)capacity, sizeof *limit->entries);
    if (!limit->entries) {
        free(limit);
        return NULL;
    }
    pthread_mutex_init(&limit->lock, NULL);
    limit->max_per_address = max_per_address;
    limit->capacity = capacity;
    return limit;
}

void address_limit_destroy(struct address_limit *limit)
{
    if (!limit)
        return;
    pthread_mutex_destroy(&limit->lock);
    free(limit->entries);
    free(limit);
}

/* Fills the family and address bytes of `address`; returns false for other families. */
static bool address_key(const struct sockaddr *address, int *family, unsigned char bytes[16])
{
    memset(bytes, 0, 16);
    if (address && address->sa_family == AF_INET) {
        memcpy(bytes, &((const struct sockaddr_in *)(const void *)address)->sin_addr, 4);
        *family = AF_INET;
        return true;
    }
    if (address && address->sa_family == AF_INET6) {
        memcpy(bytes, &((const struct sockaddr_in6 *)(const void *)address)->sin6_addr, 16);
        *family = AF_INET6;
        return true;
    }
    return false;
}

/* Returns the entry of the address, or -1; the caller holds the lock. */
static int find_entry(const struct address_limit *limit, int family, const unsigned char bytes[16])
{
    for (int i = 0; i < limit->capacity; i++) {
        const struct address_entry *entry = &limit->entries[i];

        if (entry->family == family && memcmp(entry->bytes, bytes, 16) == 0)
            return i;
    }
    return -1;
}

bool address_limit_allows(struct address_limit *limit, const struct sockaddr *address)
{
    unsigned char bytes[16];
    int family, slot;
    bool allowed;

    if (limit->max_per_address <= 0 || !address_key(address, &family, bytes))
        return true;
    pthread_mutex_lock(&limit->lock);
    slot = find_entry(limit, family, bytes);
    allowed = slot < 0 || limit->entries[slot].count < limit->max_per_address;
    pthread_mutex_unlock(&limit->lock);
    return allowed;
}

int address_limit_open(struct address_limit *limit, const struct sockaddr *address)
{
    unsigned char bytes[16];
    int family, slot;

    if (limit->max_per_address <= 0 || !address_key(address, &family, bytes))
        return -1;
    pthread_mutex_lock(&limit->lock);
    slot = find_entry(limit, family, bytes);
    for (int i = 0; slot < 0 && i < limit->capacity; i++)
        if (limit->entries[i].family == 0) {
            slot = i;
            limit->entries[i].family = family;
            memcpy(limit->entries[i].bytes, bytes, 16);
        }
    if (slot >= 0)
        limit->entries[slot].count++;
    pthread_mutex_unlock(&limit->lock);
    return slot;
}

void address_limit_close(struct address_limit *limit, int slot)
{
    if (slot < 0 || slot >= limit->capacity)
        return;
    pthread_mutex_lock(&limit->lock);
    if (limit->entries[slot].count > 0 && --limit->entries[slot].count == 0)
        limit->entries[slot].family = 0;
    pthread_mutex_unlock(&limit->lock);
}
