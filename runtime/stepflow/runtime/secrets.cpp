#include "stepflow/runtime/secrets.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

namespace stepflow {

namespace {

constexpr size_t nonce_len = 12;
constexpr size_t tag_len = 16;
constexpr size_t salt_len = 16;
constexpr size_t pbkdf2_len = 32;
constexpr int max_iterations = 10'000'000;
constexpr std::string_view hash_scheme = "pbkdf2-sha256";

/// OpenSSL failing at something that cannot fail in practice (RNG, AES-GCM
/// setup). Continuing could reuse a nonce or emit a weak secret: stop.
[[noreturn]] void crypto_fatal(const char* what) {
  std::fprintf(stderr, "stepflow: fatal: OpenSSL %s failed\n", what);
  std::abort();
}

void cleanse(std::string& s) noexcept {
  if (!s.empty())
    OPENSSL_cleanse(s.data(), s.size());
}

bool random_bytes(unsigned char* out, size_t n) noexcept {
  return n <= static_cast<size_t>(INT_MAX) && RAND_bytes(out, static_cast<int>(n)) == 1;
}

// -- base64 (standard alphabet, padded, no line breaks) -----------------------

std::string b64_encode(const unsigned char* p, size_t n) {
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  // EVP_EncodeBlock takes an int: encode in chunks that are multiples of 3.
  unsigned char buf[4 * 1024 + 1];
  constexpr size_t small = 3 * 1024; // 3 KiB in -> 4 KiB out (+ NUL)
  while (n > 0) {
    size_t take = std::min(n, small);
    int len = EVP_EncodeBlock(buf, p, static_cast<int>(take));
    out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(len));
    p += take;
    n -= take;
  }
  return out;
}

bool b64_char(char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '+' || c == '/';
}

/// Strict decoding: length a multiple of 4, alphabet only, '=' only as one or
/// two final padding characters.
std::optional<std::string> b64_decode(std::string_view s) {
  if (s.size() % 4 != 0)
    return std::nullopt;
  size_t pad = 0;
  if (!s.empty() && s.back() == '=')
    pad = s.size() >= 2 && s[s.size() - 2] == '=' ? 2 : 1;
  for (size_t i = 0; i < s.size() - pad; ++i)
    if (!b64_char(s[i]))
      return std::nullopt;
  std::string out;
  out.reserve(s.size() / 4 * 3);
  unsigned char buf[3 * 1024];
  constexpr size_t small = 4 * 1024;
  for (size_t pos = 0; pos < s.size(); pos += small) {
    size_t take = std::min(s.size() - pos, small);
    int len = EVP_DecodeBlock(buf, reinterpret_cast<const unsigned char*>(s.data() + pos),
                              static_cast<int>(take));
    if (len < 0)
      return std::nullopt;
    out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(len));
  }
  OPENSSL_cleanse(buf, sizeof buf);
  // EVP_DecodeBlock counts padding as zero bytes.
  out.resize(out.size() - pad);
  return out;
}

// -- AES-256-GCM --------------------------------------------------------------

struct ctx_deleter {
  void operator()(EVP_CIPHER_CTX* c) const noexcept { EVP_CIPHER_CTX_free(c); }
};
using cipher_ctx = std::unique_ptr<EVP_CIPHER_CTX, ctx_deleter>;

/// Chunk size for EVP_*Update, whose length is an int.
constexpr size_t update_chunk = size_t{1} << 30;

std::string encrypt_raw(const secret_key& key, std::string_view plaintext) {
  std::string blob(nonce_len + plaintext.size() + tag_len, '\0');
  auto* out = reinterpret_cast<unsigned char*>(blob.data());
  if (!random_bytes(out, nonce_len))
    crypto_fatal("RAND_bytes");
  cipher_ctx ctx{EVP_CIPHER_CTX_new()};
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(nonce_len),
                          nullptr) != 1 ||
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, key.data(), out) != 1)
    crypto_fatal("AES-256-GCM setup");
  size_t written = nonce_len;
  const auto* in = reinterpret_cast<const unsigned char*>(plaintext.data());
  for (size_t pos = 0; pos < plaintext.size(); pos += update_chunk) {
    int take = static_cast<int>(std::min(plaintext.size() - pos, update_chunk));
    int len = 0;
    if (EVP_EncryptUpdate(ctx.get(), out + written, &len, in + pos, take) != 1)
      crypto_fatal("EVP_EncryptUpdate");
    written += static_cast<size_t>(len);
  }
  int len = 0;
  if (EVP_EncryptFinal_ex(ctx.get(), out + written, &len) != 1)
    crypto_fatal("EVP_EncryptFinal_ex");
  written += static_cast<size_t>(len);
  if (written != nonce_len + plaintext.size() ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(tag_len),
                          out + written) != 1)
    crypto_fatal("AES-256-GCM tag");
  std::string token{encrypted_token_prefix};
  token += b64_encode(out, blob.size());
  return token;
}

bool truthy(const json::value& v) noexcept {
  if (v.is_bool())
    return v.get_bool();
  if (v.is_string())
    return v.get_string() == "true" || v.get_string() == "True";
  return false;
}

// -- configuration_data in cfg.raw --------------------------------------------

/// True when raw["configuration_data"] is an array of objects matching
/// cfg.data entry by entry (same size, same names in the same order).
bool raw_in_step(const configuration& cfg) {
  auto it = cfg.raw.find("configuration_data");
  if (it == cfg.raw.end() || !it->value().is_array())
    return false;
  const auto& arr = it->value().get_array();
  if (arr.size() != cfg.data.size())
    return false;
  for (size_t i = 0; i < arr.size(); ++i) {
    if (!arr[i].is_object())
      return false;
    const auto& o = arr[i].get_object();
    auto n = o.find("name");
    if (n == o.end() || !n->value().is_string() || n->value().get_string() != cfg.data[i].name)
      return false;
  }
  return true;
}

/// Makes raw["configuration_data"] match cfg.data (keeping the unknown keys
/// of entries found by name) and returns it.
json::array& sync_raw(configuration& cfg) {
  if (!raw_in_step(cfg)) {
    json::array rebuilt;
    const json::array* old = nullptr;
    if (auto it = cfg.raw.find("configuration_data");
        it != cfg.raw.end() && it->value().is_array())
      old = &it->value().get_array();
    for (const auto& e : cfg.data) {
      json::object o;
      if (old)
        for (const auto& r : *old)
          if (r.is_object())
            if (auto n = r.get_object().find("name");
                n != r.get_object().end() && n->value().is_string() &&
                n->value().get_string() == e.name) {
              o = r.get_object();
              break;
            }
      o["name"] = e.name;
      o["value"] = e.value;
      o["encrypted"] = e.encrypted;
      rebuilt.push_back(std::move(o));
    }
    cfg.raw["configuration_data"] = std::move(rebuilt);
  }
  return cfg.raw["configuration_data"].get_array();
}

/// Copies the values of the encrypted entries of cfg.data into cfg.raw.
void store_encrypted_values(configuration& cfg) {
  auto& arr = sync_raw(cfg);
  for (size_t i = 0; i < cfg.data.size(); ++i)
    if (cfg.data[i].encrypted)
      arr[i].get_object()["value"] = cfg.data[i].value;
}

std::string entry_context(const configuration& cfg, const config_entry& e) {
  return fmt::format("configuration {}: entry {}", quote_json(cfg.name), quote_json(e.name));
}

// -- key file -----------------------------------------------------------------

caf::error os_error(const std::string& path, std::string_view doing) {
  int e = errno;
  return make_error(errc::io_error,
                    fmt::format("{}: cannot {} the encryption key file: {}", path, doing,
                                std::strerror(e)));
}

int hex_digit(char c) noexcept {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/// Creates `target` with O_CREAT|O_EXCL and mode 0600, writes `content` and
/// fsyncs it. Leaves no file behind on failure. Sets errno on failure.
bool write_new_file(const std::string& target, std::string_view content) {
  int fd = ::open(target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return false;
  bool ok = ::fchmod(fd, 0600) == 0;
  for (size_t done = 0; ok && done < content.size();) {
    auto n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      if (n == 0)
        errno = EIO;
      ok = false;
      break;
    }
    done += static_cast<size_t>(n);
  }
  ok = ok && ::fsync(fd) == 0;
  int saved = errno;
  if (::close(fd) != 0 && ok) {
    ok = false;
    saved = errno;
  }
  if (!ok) {
    ::unlink(target.c_str());
    errno = saved;
  }
  return ok;
}

void fsync_parent(const std::string& path) noexcept {
  auto slash = path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void) ::fsync(fd);
    ::close(fd);
  }
}

std::string to_hex(const unsigned char* p, size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n + 1);
  for (size_t i = 0; i < n; ++i) {
    out += digits[p[i] >> 4];
    out += digits[p[i] & 0xf];
  }
  return out;
}

/// Reads an existing key file into `out`; `exists` is false (and no error
/// returned) when there is no file at `path`.
caf::error read_key_file(const std::string& path, bool& exists, unsigned char* out) {
  exists = true;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      exists = false;
      return {};
    }
    return os_error(path, "open");
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    auto err = os_error(path, "stat");
    ::close(fd);
    return err;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return make_error(errc::invalid_definition,
                      fmt::format("{}: the encryption key file is not a regular file", path));
  }
  // Read one byte more than the longest valid file to detect extra content.
  char buf[67];
  size_t got = 0;
  while (got < sizeof buf) {
    auto n = ::read(fd, buf + got, sizeof buf - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      auto err = os_error(path, "read");
      ::close(fd);
      OPENSSL_cleanse(buf, sizeof buf);
      return err;
    }
    if (n == 0)
      break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  std::string_view text{buf, got};
  if (text.size() >= 2 && text.substr(text.size() - 2) == "\r\n")
    text.remove_suffix(2);
  else if (!text.empty() && text.back() == '\n')
    text.remove_suffix(1);
  constexpr size_t hex_len = 2 * secret_key::size_bytes;
  caf::error err;
  if (text.size() != hex_len) {
    err = make_error(errc::invalid_definition,
                     fmt::format("{}: the encryption key file has {}{} bytes; expected {} hex "
                                 "digits and a newline ({} bytes)",
                                 path, got == sizeof buf ? "more than " : "",
                                 got == sizeof buf ? got - 1 : got, hex_len, hex_len + 1));
  } else {
    for (size_t i = 0; i < secret_key::size_bytes; ++i) {
      int hi = hex_digit(text[2 * i]);
      int lo = hex_digit(text[2 * i + 1]);
      if (hi < 0 || lo < 0) {
        err = make_error(errc::invalid_definition,
                         fmt::format("{}: the encryption key file is not {} hex digits", path,
                                     hex_len));
        break;
      }
      out[i] = static_cast<unsigned char>(hi << 4 | lo);
    }
  }
  OPENSSL_cleanse(buf, sizeof buf);
  return err;
}

} // namespace

// -- secret_key ---------------------------------------------------------------

secret_key::~secret_key() {
  OPENSSL_cleanse(bytes_.data(), bytes_.size());
}

caf::expected<secret_key> secret_key::generate() {
  secret_key key;
  if (!random_bytes(key.bytes_.data(), key.bytes_.size()))
    return make_error(errc::internal, "the random number generator failed to make a key");
  return key;
}

caf::expected<secret_key> load_or_create_key(const std::string& path) {
  if (path.empty())
    return make_error(errc::invalid_argument, "the encryption key file path is empty");
  // Two rounds: a concurrent creator may win the race between our failed
  // read and our link(); then we read its key.
  for (int round = 0; round < 2; ++round) {
    bool exists = false;
    secret_key existing;
    if (auto err = read_key_file(path, exists, existing.bytes_.data()))
      return err;
    if (exists)
      return existing;
    auto key = secret_key::generate();
    if (!key)
      return key.error();
    std::string text = to_hex(key->bytes_.data(), key->bytes_.size());
    text += '\n';
    // Write a private temp file, then link it into place: link() fails with
    // EEXIST instead of replacing, and readers never see a partial key.
    unsigned char rnd[8];
    if (!random_bytes(rnd, sizeof rnd)) {
      cleanse(text);
      return make_error(errc::internal, "the random number generator failed");
    }
    std::string tmp = fmt::format("{}.tmp.{}.{}", path, ::getpid(), to_hex(rnd, sizeof rnd));
    if (!write_new_file(tmp, text)) {
      cleanse(text);
      return os_error(path, "create");
    }
    int rc = ::link(tmp.c_str(), path.c_str());
    int link_errno = errno;
    ::unlink(tmp.c_str());
    if (rc != 0 && (link_errno == EPERM || link_errno == EOPNOTSUPP || link_errno == ENOSYS)) {
      // A file system without hard links: create the file in place.
      if (!write_new_file(path, text)) {
        if (errno == EEXIST) {
          cleanse(text);
          continue;
        }
        cleanse(text);
        return os_error(path, "create");
      }
      rc = 0;
    }
    cleanse(text);
    if (rc != 0) {
      if (link_errno == EEXIST)
        continue;
      errno = link_errno;
      return os_error(path, "create");
    }
    fsync_parent(path);
    return key;
  }
  return make_error(errc::io_error,
                    fmt::format("{}: the encryption key file keeps appearing and vanishing",
                                path));
}

// -- values -------------------------------------------------------------------

std::string encrypt_value(const secret_key& key, std::string_view plaintext) {
  return encrypt_raw(key, plaintext);
}

bool is_encrypted_token(std::string_view s) noexcept {
  if (s.size() < encrypted_token_prefix.size() ||
      s.substr(0, encrypted_token_prefix.size()) != encrypted_token_prefix)
    return false;
  s.remove_prefix(encrypted_token_prefix.size());
  // nonce + tag = 28 bytes -> at least 40 base64 characters.
  if (s.size() % 4 != 0 || s.size() < (nonce_len + tag_len + 2) / 3 * 4)
    return false;
  size_t pad = s.back() == '=' ? (s[s.size() - 2] == '=' ? 2 : 1) : 0;
  if (s.size() / 4 * 3 - pad < nonce_len + tag_len)
    return false;
  return std::all_of(s.begin(), s.end() - static_cast<long>(pad), b64_char);
}

caf::expected<std::string> decrypt_value(const secret_key& key, std::string_view token) {
  if (token.substr(0, encrypted_token_prefix.size()) != encrypted_token_prefix)
    return make_error(errc::invalid_argument,
                      "not an encrypted value: it does not start with \"enc:v1:\"");
  auto blob = b64_decode(token.substr(encrypted_token_prefix.size()));
  if (!blob)
    return make_error(errc::invalid_argument,
                      "malformed encrypted value: the text after \"enc:v1:\" is not base64");
  if (blob->size() < nonce_len + tag_len)
    return make_error(errc::invalid_argument,
                      "malformed encrypted value: too short to hold a nonce and a tag");
  const auto* in = reinterpret_cast<const unsigned char*>(blob->data());
  size_t ct_len = blob->size() - nonce_len - tag_len;
  std::string plain(ct_len, '\0');
  auto* out = reinterpret_cast<unsigned char*>(plain.data());
  cipher_ctx ctx{EVP_CIPHER_CTX_new()};
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(nonce_len),
                          nullptr) != 1 ||
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, key.data(), in) != 1)
    return make_error(errc::internal, "cannot set up AES-256-GCM decryption");
  size_t written = 0;
  for (size_t pos = 0; pos < ct_len; pos += update_chunk) {
    int take = static_cast<int>(std::min(ct_len - pos, update_chunk));
    int len = 0;
    if (EVP_DecryptUpdate(ctx.get(), out + written, &len, in + nonce_len + pos, take) != 1) {
      cleanse(plain);
      return make_error(errc::internal, "AES-256-GCM decryption failed");
    }
    written += static_cast<size_t>(len);
  }
  // The tag ctrl takes a non-const pointer but only reads it.
  auto* tag = const_cast<unsigned char*>(in + nonce_len + ct_len);
  int len = 0;
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(tag_len), tag) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), out + written, &len) != 1) {
    cleanse(plain);
    return make_error(errc::invalid_argument,
                      "cannot decrypt the value (wrong encryption key or corrupted value)");
  }
  return plain;
}

// -- configurations -----------------------------------------------------------

caf::expected<configuration> encrypt_configuration(const secret_key& key, configuration cfg) {
  bool any = false;
  for (auto& e : cfg.data) {
    if (!e.encrypted)
      continue;
    any = true;
    if (e.value.is_string() && is_encrypted_token(e.value.get_string()))
      continue;
    auto text = to_json(e.value);
    e.value = encrypt_raw(key, text);
    cleanse(text);
  }
  if (any || !raw_in_step(cfg))
    store_encrypted_values(cfg);
  return cfg;
}

caf::expected<configuration> decrypt_configuration(const secret_key& key, configuration cfg) {
  bool any = false;
  for (auto& e : cfg.data) {
    if (!e.encrypted || !e.value.is_string() || !is_encrypted_token(e.value.get_string()))
      continue;
    any = true;
    auto text = decrypt_value(key, e.value.get_string());
    if (!text)
      return make_error(code_of(text.error()), fmt::format("{}: {}", entry_context(cfg, e),
                                                           message_of(text.error())));
    auto v = parse_json(*text, "decrypted value");
    cleanse(*text);
    if (!v)
      return make_error(errc::invalid_argument,
                        fmt::format("{}: the decrypted value is not JSON text",
                                    entry_context(cfg, e)));
    e.value = std::move(*v);
  }
  if (any || !raw_in_step(cfg))
    store_encrypted_values(cfg);
  return cfg;
}

json::value masked(const configuration& cfg) {
  configuration copy = cfg;
  auto& arr = sync_raw(copy);
  for (size_t i = 0; i < copy.data.size(); ++i) {
    auto& o = arr[i].get_object();
    bool flagged = false;
    if (auto it = o.find("encrypted"); it != o.end())
      flagged = truthy(it->value());
    if (copy.data[i].encrypted || flagged)
      o["value"] = masked_value;
  }
  return to_json(copy);
}

// -- passwords ----------------------------------------------------------------

namespace {

bool pbkdf2(std::string_view password, const std::string& salt, int iterations,
            unsigned char* out, size_t out_len) {
  if (password.size() > static_cast<size_t>(INT_MAX) || salt.size() > 1024 || out_len > 1024)
    return false;
  return PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                           reinterpret_cast<const unsigned char*>(salt.data()),
                           static_cast<int>(salt.size()), iterations, EVP_sha256(),
                           static_cast<int>(out_len), out) == 1;
}

} // namespace

std::string hash_password(std::string_view password) {
  std::string salt(salt_len, '\0');
  if (!random_bytes(reinterpret_cast<unsigned char*>(salt.data()), salt.size()))
    crypto_fatal("RAND_bytes");
  unsigned char out[pbkdf2_len];
  if (!pbkdf2(password, salt, password_hash_iterations, out, sizeof out))
    crypto_fatal("PKCS5_PBKDF2_HMAC");
  auto result = fmt::format("{}${}${}${}", hash_scheme, password_hash_iterations,
                            b64_encode(reinterpret_cast<const unsigned char*>(salt.data()),
                                       salt.size()),
                            b64_encode(out, sizeof out));
  OPENSSL_cleanse(out, sizeof out);
  return result;
}

bool verify_password(std::string_view password, std::string_view stored) {
  std::string_view parts[4];
  size_t n = 0;
  for (size_t start = 0;;) {
    auto end = stored.find('$', start);
    if (n == 4)
      return false;
    parts[n++] = stored.substr(start, end == std::string_view::npos ? end : end - start);
    if (end == std::string_view::npos)
      break;
    start = end + 1;
  }
  if (n != 4 || parts[0] != hash_scheme || parts[1].empty())
    return false;
  int iterations = 0;
  auto [ptr, ec] = std::from_chars(parts[1].data(), parts[1].data() + parts[1].size(), iterations);
  if (ec != std::errc{} || ptr != parts[1].data() + parts[1].size() || iterations < 1 ||
      iterations > max_iterations)
    return false;
  auto salt = b64_decode(parts[2]);
  auto expected = b64_decode(parts[3]);
  if (!salt || salt->empty() || !expected || expected->size() < 16 || expected->size() > 64)
    return false;
  unsigned char out[64];
  bool ok = pbkdf2(password, *salt, iterations, out, expected->size()) &&
            CRYPTO_memcmp(out, expected->data(), expected->size()) == 0;
  OPENSSL_cleanse(out, sizeof out);
  return ok;
}

std::string generate_password() {
  static constexpr std::string_view alphabet =
    "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
  // Rejection sampling: bytes >= limit would bias the first characters.
  constexpr unsigned limit = 256 - 256 % alphabet.size();
  std::string out;
  out.reserve(20);
  unsigned char buf[64];
  while (out.size() < 20) {
    if (!random_bytes(buf, sizeof buf))
      crypto_fatal("RAND_bytes");
    for (unsigned char b : buf)
      if (b < limit && out.size() < 20)
        out += alphabet[b % alphabet.size()];
  }
  OPENSSL_cleanse(buf, sizeof buf);
  return out;
}

// -- credential_cache ---------------------------------------------------------

credential_cache::credential_cache() {
  usable_ = random_bytes(process_key_.data(), process_key_.size());
  entries_.reserve(capacity);
  // The key schedule is done once; each check copies the keyed context.
  EVP_MAC* hmac = usable_ ? EVP_MAC_fetch(nullptr, "HMAC", nullptr) : nullptr;
  keyed_ = hmac ? EVP_MAC_CTX_new(hmac) : nullptr;
  EVP_MAC_free(hmac);
  char digest_name[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest_name, 0),
                         OSSL_PARAM_construct_end()};
  if (!keyed_ || EVP_MAC_init(keyed_, process_key_.data(), process_key_.size(), params) != 1)
    usable_ = false;
}

credential_cache::~credential_cache() {
  EVP_MAC_CTX_free(keyed_);
  OPENSSL_cleanse(process_key_.data(), process_key_.size());
  for (auto& d : entries_)
    OPENSSL_cleanse(d.data(), d.size());
}

bool credential_cache::mac(std::string_view user, std::string_view password,
                           digest& out) const {
  // Length-prefixed so that no two (user, password) pairs share a message.
  unsigned char prefix[8];
  uint64_t n = user.size();
  for (int i = 0; i < 8; ++i)
    prefix[i] = static_cast<unsigned char>((n >> (8 * (7 - i))) & 0xff);
  EVP_MAC_CTX* ctx = keyed_ ? EVP_MAC_CTX_dup(keyed_) : nullptr;
  if (!ctx)
    return false;
  size_t len = 0;
  bool ok = EVP_MAC_update(ctx, prefix, sizeof prefix) == 1
            && EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(user.data()),
                              user.size()) == 1
            && EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(password.data()),
                              password.size()) == 1
            && EVP_MAC_final(ctx, out.data(), &len, out.size()) == 1 && len == out.size();
  EVP_MAC_CTX_free(ctx); // cleanses its key material
  return ok;
}

bool credential_cache::check(std::string_view user, std::string_view password,
                             const std::function<bool()>& slow_verify) {
  digest d{};
  bool have_mac = usable_ && mac(user, password, d);
  uint64_t gen = 0;
  if (have_mac) {
    std::lock_guard<std::mutex> guard{mtx_};
    bool hit = false;
    for (const auto& e : entries_)
      hit |= CRYPTO_memcmp(e.data(), d.data(), d.size()) == 0;
    if (hit) {
      OPENSSL_cleanse(d.data(), d.size());
      return true;
    }
    gen = generation_;
  }
  bool ok = slow_verify && slow_verify();
  if (ok && have_mac) {
    std::lock_guard<std::mutex> guard{mtx_};
    bool present = false;
    for (const auto& e : entries_)
      present |= CRYPTO_memcmp(e.data(), d.data(), d.size()) == 0;
    if (generation_ == gen && !present) {
      if (entries_.size() < capacity) {
        entries_.push_back(d);
      } else {
        entries_[next_] = d;
        next_ = (next_ + 1) % capacity;
      }
    }
  }
  OPENSSL_cleanse(d.data(), d.size());
  return ok;
}

void credential_cache::invalidate() {
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto& d : entries_)
    OPENSSL_cleanse(d.data(), d.size());
  entries_.clear();
  next_ = 0;
  ++generation_;
}

size_t credential_cache::size() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return entries_.size();
}

// -- HTTP Basic ---------------------------------------------------------------

std::optional<std::pair<std::string, std::string>>
parse_basic_auth(std::string_view header) {
  auto is_space = [](char c) { return c == ' ' || c == '\t'; };
  while (!header.empty() && is_space(header.front()))
    header.remove_prefix(1);
  while (!header.empty() && is_space(header.back()))
    header.remove_suffix(1);
  constexpr std::string_view scheme = "basic";
  if (header.size() <= scheme.size() || !is_space(header[scheme.size()]))
    return std::nullopt;
  for (size_t i = 0; i < scheme.size(); ++i) {
    char c = header[i];
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
    if (c != scheme[i])
      return std::nullopt;
  }
  header.remove_prefix(scheme.size());
  while (!header.empty() && is_space(header.front()))
    header.remove_prefix(1);
  if (header.empty() || std::any_of(header.begin(), header.end(), is_space))
    return std::nullopt;
  // Tolerate clients that drop the padding.
  std::string token{header};
  if (token.size() % 4 == 1)
    return std::nullopt;
  while (token.size() % 4 != 0)
    token += '=';
  auto decoded = b64_decode(token);
  if (!decoded)
    return std::nullopt;
  auto colon = decoded->find(':');
  if (colon == std::string::npos) {
    cleanse(*decoded);
    return std::nullopt;
  }
  std::pair<std::string, std::string> result{decoded->substr(0, colon),
                                             decoded->substr(colon + 1)};
  cleanse(*decoded);
  return result;
}

} // namespace stepflow
