#pragma once
// A JSON body for a response (the admin API's and the connect worker's routes). Bytes that are
// not UTF-8 (possible in a stored value or an error text) are replaced, never thrown.

#include <nlohmann/json.hpp>

#include "http/message.h"

namespace ordo::http {

inline Response json_response(int status, const nlohmann::json& j) {
  return {status, "application/json",
          j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"};
}

}  // namespace ordo::http
