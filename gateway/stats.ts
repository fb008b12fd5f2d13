/**
 * Counters of what the gateway refused, by kind: served at `GET /api/v1/stats`,
 * counted by the gateway's `onError`.
 *
 * @module
 */

/** Counters of what the gateway refused, by kind. */
export interface GatewayStats {
  unauthorized: number;
  forbidden: number;
  notFound: number;
  tooLarge: number;
  rateLimited: number;
  badRequest: number;
}

const KIND_OF_STATUS = {
  400: "badRequest",
  401: "unauthorized",
  403: "forbidden",
  404: "notFound",
  413: "tooLarge",
  429: "rateLimited",
} as const;

/** Zeroed counters, and `count(status)` to add a refusal to them. */
export function createGatewayStats(): { stats: GatewayStats; count(status: number): void } {
  const stats: GatewayStats = {
    unauthorized: 0,
    forbidden: 0,
    notFound: 0,
    tooLarge: 0,
    rateLimited: 0,
    badRequest: 0,
  };
  return {
    stats,
    count(status) {
      const kind = KIND_OF_STATUS[status as keyof typeof KIND_OF_STATUS];
      if (kind) stats[kind]++;
    },
  };
}
