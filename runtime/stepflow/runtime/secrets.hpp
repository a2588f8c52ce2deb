#pragma once
// Secrets for `stepflow serve`: the per-installation encryption key,
// AES-256-GCM encrypted configuration values (PowerFlow's "encrypted": true
// entries), the local admin's PBKDF2 password hash, a credential cache for
// the request hot path and HTTP Basic parsing. All crypto is OpenSSL EVP.
// Nothing here puts a key, a clear-text secret or a password into an error
// sentence.
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stepflow/runtime/errc.hpp"
#include "stepflow/runtime/json.hpp"
#include "stepflow/runtime/model.hpp"

struct evp_mac_ctx_st; // OpenSSL's EVP_MAC_CTX

namespace stepflow {

/// A 32-byte AES-256 key. Deliberately not printable (no to_string, no
/// operator<<, no inspect); the bytes are wiped with OPENSSL_cleanse when the
/// object dies.
class secret_key {
public:
  static constexpr size_t size_bytes = 32;

  /// A fresh random key (RAND_bytes); errc::internal if the RNG fails.
  static caf::expected<secret_key> generate();

  secret_key(const secret_key&) noexcept = default;
  secret_key& operator=(const secret_key&) noexcept = default;
  ~secret_key();

  const unsigned char* data() const noexcept { return bytes_.data(); }
  static constexpr size_t size() noexcept { return size_bytes; }

private:
  friend caf::expected<secret_key> load_or_create_key(const std::string& path);
  /// All zeros: only generate() and load_or_create_key() make keys.
  secret_key() noexcept = default;
  std::array<unsigned char, size_bytes> bytes_{};
};

/// Loads the key stored at `path`, or creates it when the file does not exist.
/// File format: 64 lower-case hex digits followed by one newline ("\n"; a
/// missing newline or "\r\n" is accepted when reading). A new file is written
/// to a temporary file created with O_CREAT|O_EXCL and mode 0600, fsynced,
/// then linked into place, so a concurrent creator never sees a partial key
/// and never overwrites an existing one. Errors (errc::io_error for the OS,
/// errc::invalid_definition for a file of the wrong size or format) name the
/// file but never show its content.
caf::expected<secret_key> load_or_create_key(const std::string& path);

/// The prefix of every encrypted value.
inline constexpr std::string_view encrypted_token_prefix = "enc:v1:";

/// `"enc:v1:" + base64(12-byte random nonce | ciphertext | 16-byte GCM tag)`
/// (standard alphabet, padded, no line breaks). Two calls with the same
/// plaintext give different tokens. Aborts the process if OpenSSL's RNG or
/// cipher fails (never emits a token with a reused nonce).
std::string encrypt_value(const secret_key& key, std::string_view plaintext);

/// The plaintext of `token`. errc::invalid_argument for a token that is not
/// of the encrypt_value form, and for one that fails authentication ("cannot
/// decrypt ... (wrong encryption key or corrupted value)").
caf::expected<std::string> decrypt_value(const secret_key& key, std::string_view token);

/// True when `s` has the encrypt_value form (prefix, valid base64, long
/// enough for nonce and tag). Says nothing about which key made it.
bool is_encrypted_token(std::string_view s) noexcept;

/// Encrypts every entry with `encrypted == true` whose value is not already a
/// token string: the value's compact JSON text becomes the token, in both
/// cfg.data and cfg.raw["configuration_data"] (rebuilt from cfg.data when
/// absent or out of step), so to_json(cfg) shows tokens only. Tokens already
/// present are kept unchanged.
caf::expected<configuration> encrypt_configuration(const secret_key& key, configuration cfg);

/// The inverse: every encrypted entry holding a token gets back its JSON
/// value (in cfg.data and cfg.raw). Errors name the configuration and entry.
caf::expected<configuration> decrypt_configuration(const secret_key& key, configuration cfg);

/// The string shown instead of an encrypted value.
inline constexpr std::string_view masked_value = "********";

/// to_json(cfg) with every encrypted entry's value replaced by "********":
/// neither the clear text nor the token (what the REST API returns).
json::value masked(const configuration& cfg);

/// PBKDF2 parameters of hash_password (OWASP 2023 for PBKDF2-HMAC-SHA256).
inline constexpr int password_hash_iterations = 210000;

/// `"pbkdf2-sha256$<iterations>$<base64 salt>$<base64 hash>"` with a 16-byte
/// random salt and a 32-byte PKCS5_PBKDF2_HMAC/SHA-256 hash. Aborts the
/// process if OpenSSL fails.
std::string hash_password(std::string_view password);

/// True when `password` matches `stored` (a hash_password result; other
/// iteration counts in 1..10'000'000 are honoured). Constant-time compare;
/// false for malformed `stored`.
bool verify_password(std::string_view password, std::string_view stored);

/// 20 random characters (RAND_bytes, unbiased) from an alphabet without
/// look-alikes (no 0/O/o, 1/l/I). Aborts the process if the RNG fails.
std::string generate_password();

/// Remembers credentials that verified OK so that repeated requests cost one
/// HMAC instead of a PBKDF2 run. Stores only HMAC-SHA256(random per-process
/// key, length-prefixed user | password), at most `capacity` of them (oldest
/// dropped first). Thread-safe; slow_verify runs without the lock held.
class credential_cache {
public:
  static constexpr size_t capacity = 64;

  credential_cache();
  ~credential_cache();
  credential_cache(const credential_cache&) = delete;
  credential_cache& operator=(const credential_cache&) = delete;

  /// True when (user, password) is cached or slow_verify() returns true; in
  /// the latter case the pair is cached (unless invalidate() ran while
  /// slow_verify was running). Failures are never cached.
  bool check(std::string_view user, std::string_view password,
             const std::function<bool()>& slow_verify);

  /// Forgets every cached credential (call when the password changes).
  void invalidate();

  /// Number of cached credentials (for tests and metrics).
  size_t size() const;

private:
  using digest = std::array<unsigned char, 32>;
  bool mac(std::string_view user, std::string_view password, digest& out) const;

  std::array<unsigned char, 32> process_key_{};
  evp_mac_ctx_st* keyed_ = nullptr; ///< HMAC-SHA256 set up with the key, copied per check
  bool usable_ = false; ///< false when the RNG or OpenSSL failed: never cache
  mutable std::mutex mtx_;
  std::vector<digest> entries_; ///< ring of at most `capacity` digests
  size_t next_ = 0;             ///< ring write position once full
  uint64_t generation_ = 0;     ///< bumped by invalidate()
};

/// (user, password) from an `Authorization` header value "Basic <base64>"
/// (scheme case-insensitive; the password may contain ':'), std::nullopt for
/// any other scheme or malformed value.
std::optional<std::pair<std::string, std::string>>
parse_basic_auth(std::string_view authorization_header);

} // namespace stepflow
