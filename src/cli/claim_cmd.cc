// `ordo claim VALUE --owner O` (docs/connect.md, "Claims"): sends the claim to the claims topic
// and prints the decision the claims sink writes to the results topic.

#include <cstdio>

#include "cli/client.h"
#include "cli/commands.h"
#include "connect/claims.h"

namespace ordo::cli {

int claim(const ClaimArgs& a) {
  connect::ClaimRequest r;
  r.bootstrap = bootstrap_servers(a.client);
  r.topic = a.topic;
  r.results_topic = a.results.empty() ? a.topic + ".results" : a.results;
  r.value = a.value;
  r.owner = a.owner;
  r.release = a.release;
  r.timeout_ms = a.timeout_ms;
  auto d = connect::claim_and_wait(r);
  if (!d) {
    std::fprintf(stderr, "ordo claim: %s\n", d.error().message.c_str());
    return 1;
  }
  std::printf("%s\n", d->dump().c_str());
  return d->value("accepted", false) ? 0 : 3;
}

}  // namespace ordo::cli
